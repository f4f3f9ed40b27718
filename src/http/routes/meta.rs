//! `GET /ok` under the base path; `/health` and `/ready` at the root; the JSON 404.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::http::error::ApiError;
use crate::http::state::AppState;

/// Better Auth's liveness route: `{"ok": true}`.
pub async fn ok() -> Json<serde_json::Value> {
    Json(json!({ "ok": true }))
}

/// Liveness: the process is running. Never touches the store.
pub async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: the store responds and every migration is applied, else 503.
pub async fn ready(State(state): State<AppState>) -> Response {
    match state.store.ready().await {
        Ok(()) => Json(json!({ "status": "ready" })).into_response(),
        Err(error) => {
            tracing::warn!(error = format!("{error:#}"), "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "unavailable" }))).into_response()
        }
    }
}

/// A proof-of-work challenge for the built-in bot check; 404 with another provider.
pub async fn captcha_challenge(State(state): State<AppState>) -> Result<Response, ApiError> {
    let altcha = state.altcha.as_ref().ok_or(ApiError::NotFound)?;
    let mut response = Json(altcha.challenge()).into_response();
    response.headers_mut().insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Unknown paths and methods: 404 `NOT_FOUND` as JSON.
pub async fn not_found() -> ApiError {
    ApiError::NotFound
}
