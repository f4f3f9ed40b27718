//! The sync gateway's routes at `{sync.base_path}`: `GET /token`, `PUT /upload` and `GET /jwks`.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::core::auth::{Current, Refresh};
use crate::core::sync::{device_name, DeviceId};
use crate::core::token::SessionToken;
use crate::core::upload::UploadOutcome;
use crate::http::error::ApiError;
use crate::http::extract::{deserialize_body, read_json_object, record_caller, Presented};
use crate::http::state::AppState;

/// `{token, expiresAt, powerSyncUrl}` for a real user on a registered device. Checks run in this
/// order, the same on the cookie and the bearer path: origin (when present), session, guest,
/// device.
pub async fn token(State(state): State<AppState>, headers: HeaderMap, Presented(presented): Presented) -> Result<Response, ApiError> {
    let sync = state.sync.as_ref().ok_or(ApiError::NotFound)?;
    let current = real_caller(&state, &headers, presented, false).await?;
    let device = device_id(&headers)?;
    let name = device_name(headers.get("x-device-name").and_then(|value| value.to_str().ok()));

    let (token, expires_at) = sync.gateway.issue(&current, &device, &name).await?;

    let body = json!({ "token": token, "expiresAt": expires_at.to_wire(), "powerSyncUrl": sync.powersync_url });
    let mut response = Json(body).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The body of an upload: the client's queued operations, checked one by one later.
#[derive(Deserialize)]
struct UploadBody {
    operations: Vec<Value>,
}

/// Applies a write batch for a real user on a registered device and responds with
/// `{applied, rejected}`. The token route's checks run first, with the origin rule for cookies
/// after the origin check. The body is read only once the caller passed them all.
pub async fn upload(State(state): State<AppState>, Presented(presented): Presented, request: Request) -> Result<Response, ApiError> {
    let sync = state.sync.as_ref().ok_or(ApiError::NotFound)?;
    let uploads = sync.uploads.as_ref().ok_or(ApiError::NotFound)?;
    let headers = request.headers().clone();
    let current = real_caller(&state, &headers, presented, true).await?;
    let device = device_id(&headers)?;
    sync.gateway.check_upload_device(&current, &device).await?;

    let body: UploadBody = deserialize_body(read_json_object(request, uploads.max_body).await?)?;
    if body.operations.len() > uploads.max_operations as usize {
        return Err(ApiError::TooManyOperations(uploads.max_operations));
    }
    let outcome = uploads.uploader.upload(&current, &device, &body.operations).await?;
    Ok(Json(outcome_json(&outcome)).into_response())
}

fn outcome_json(outcome: &UploadOutcome) -> Value {
    let rejected: Vec<Value> = outcome
        .rejected
        .iter()
        .map(|rejection| {
            json!({
                "index": rejection.index,
                "op": rejection.op,
                "type": rejection.table,
                "id": rejection.id,
                "code": rejection.code.as_str(),
                "message": rejection.message,
            })
        })
        .collect();
    json!({ "applied": outcome.applied, "rejected": rejected })
}

/// The sync ring's public keys, for PowerSync's JWKS URI; never the general keys.
pub async fn jwks(State(state): State<AppState>) -> Result<Response, ApiError> {
    state.sync.as_ref().ok_or(ApiError::NotFound)?;
    let mut response = Json(state.tokens.sync_jwks()).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=60"));
    Ok(response)
}

/// Runs the checks both routes share, in this order. A present `Origin` must be trusted. When the
/// request `writes`, a cookie needs a trusted origin (`Origin`, else `Referer`). The session must
/// be valid, and the user must not be a guest.
async fn real_caller(state: &AppState, headers: &HeaderMap, presented: Option<SessionToken>, writes: bool) -> Result<Current, ApiError> {
    if let Some(origin) = headers.get(header::ORIGIN) {
        if !origin.to_str().is_ok_and(|text| state.origins.is_trusted(text)) {
            return Err(ApiError::OriginNotAllowed);
        }
    }
    if writes && headers.contains_key(header::COOKIE) {
        state.origins.check_request_origin(headers)?;
    }
    let token = presented.ok_or(ApiError::Unauthorized)?;
    let current = state.auth.authenticate(&token, Refresh::Never).await?.ok_or(ApiError::Unauthorized)?;
    record_caller(&current);
    if current.user.is_anonymous {
        return Err(ApiError::AnonymousSyncForbidden);
    }
    Ok(current)
}

/// Reads the `X-Device-ID` header: 400 `DEVICE_ID_REQUIRED` without it, 400 `INVALID_DEVICE_ID`
/// when it breaks the format.
fn device_id(headers: &HeaderMap) -> Result<DeviceId, ApiError> {
    let device = headers.get("x-device-id").ok_or(ApiError::DeviceIdRequired)?;
    device.to_str().ok().and_then(DeviceId::parse).ok_or(ApiError::InvalidDeviceId)
}
