//! Request-wide middleware: request span and log line, time limit, origin check.

use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::error::ApiError;
use super::state::AppState;
use crate::core::random;

/// Opens the request span (request id, method, path without the query) and logs the status and
/// latency at debug when the response is ready. The id is also returned as `x-request-id`.
pub async fn request_span(request: Request, next: Next) -> Response {
    let request_id = random::alphanumeric(16);
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %request.method(),
        path = %request.uri().path(),
        user_id = tracing::field::Empty,
        session_id = tracing::field::Empty,
    );
    let started = Instant::now();

    let mut response = next.run(request).instrument(span.clone()).await;

    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    span.in_scope(|| tracing::debug!(status = response.status().as_u16(), latency_ms, "request finished"));
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// Returns 408 `REQUEST_TIMEOUT` when the handler takes longer than `server.request_timeout`.
pub async fn time_limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(state.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::RequestTimeout.into_response(),
    }
}

/// The CSRF rule: a state-changing request that carries a cookie must come from a trusted
/// origin. Requests without a `Cookie` header (bearer-only clients) are exempt.
pub async fn origin_check(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let safe = matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe && request.headers().contains_key(header::COOKIE) {
        if let Err(error) = state.origins.check_request_origin(request.headers()) {
            return error.into_response();
        }
    }
    next.run(request).await
}
