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

/// Unknown paths and methods: 404 `NOT_FOUND` as JSON.
pub async fn not_found() -> ApiError {
    ApiError::NotFound
}
