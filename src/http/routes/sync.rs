//! The sync gateway's routes at `{sync.base_path}`: `GET /token` and `GET /jwks`.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::core::auth::Refresh;
use crate::core::sync::{device_name, DeviceId};
use crate::http::error::ApiError;
use crate::http::extract::{record_caller, Presented};
use crate::http::state::AppState;

/// `{token, expiresAt, powerSyncUrl}` for a real user on a registered device. Checks run in this
/// order, the same on the cookie and the bearer path: origin (when present), session, guest,
/// device.
pub async fn token(State(state): State<AppState>, headers: HeaderMap, Presented(presented): Presented) -> Result<Response, ApiError> {
    let sync = state.sync.as_ref().ok_or(ApiError::NotFound)?;
    if let Some(origin) = headers.get(header::ORIGIN) {
        if !origin.to_str().is_ok_and(|text| state.origins.is_trusted(text)) {
            return Err(ApiError::OriginNotAllowed);
        }
    }

    let token = presented.ok_or(ApiError::Unauthorized)?;
    let current = state.auth.authenticate(&token, Refresh::Never).await?.ok_or(ApiError::Unauthorized)?;
    record_caller(&current);
    if current.user.is_anonymous {
        return Err(ApiError::AnonymousSyncForbidden);
    }
    let device = headers.get("x-device-id").ok_or(ApiError::DeviceIdRequired)?;
    let device = device.to_str().ok().and_then(DeviceId::parse).ok_or(ApiError::InvalidDeviceId)?;
    let name = device_name(headers.get("x-device-name").and_then(|value| value.to_str().ok()));

    let (token, expires_at) = sync.gateway.issue(&current, &device, &name).await?;

    let body = json!({ "token": token, "expiresAt": expires_at.to_wire(), "powerSyncUrl": sync.powersync_url });
    let mut response = Json(body).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The sync ring's public keys, for PowerSync's JWKS URI; never the general keys.
pub async fn jwks(State(state): State<AppState>) -> Result<Response, ApiError> {
    state.sync.as_ref().ok_or(ApiError::NotFound)?;
    let mut response = Json(state.tokens.sync_jwks()).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=60"));
    Ok(response)
}
