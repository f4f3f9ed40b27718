//! `GET /token` and `GET /jwks`: general-purpose JWTs and their public keys.

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::http::error::ApiError;
use crate::http::extract::Authenticated;
use crate::http::state::AppState;
use crate::http::wire::json_for;

/// `{token}`: a JWT for the caller, guests included, with `isAnonymous` among its claims.
pub async fn token(State(state): State<AppState>, Authenticated(current): Authenticated) -> Result<Response, ApiError> {
    let token = state.tokens.general_token(&current)?;
    Ok(json_for(&state, &current, serde_json::json!({ "token": token })))
}

/// The general ring's public keys; never the sync keys.
pub async fn jwks(State(state): State<AppState>) -> Response {
    let mut response = Json(state.tokens.general_jwks()).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=60"));
    response
}
