//! `POST /sign-in/anonymous` and `POST /delete-anonymous-user`.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::Value;

use crate::core::rate_limit::ip_key;
use crate::http::error::ApiError;
use crate::http::rate_limit;
use crate::http::extract::{Authenticated, Client, JsonBody, Presented};
use crate::http::state::AppState;
use crate::http::wire::{clear_session, signed_in};

/// Creates a guest and its session. Checks run in this order: origin (the router-wide rule, then
/// the sign-in Fetch Metadata rule), guests enabled, the `sign_in` and `guest_create` limits, the
/// fixation guard, the bot check, then the write.
pub async fn sign_in_anonymous(
    State(state): State<AppState>,
    headers: HeaderMap,
    Presented(presented): Presented,
    Client(client): Client,
    JsonBody(_body): JsonBody<serde_json::Map<String, Value>>,
) -> Result<Response, ApiError> {
    state.origins.check_sign_in(&headers)?;
    if !state.auth.guests_enabled() {
        return Err(ApiError::NotFound);
    }
    let key = client.ip_address.parse().map(ip_key).unwrap_or_default();
    rate_limit::check(&state, rate_limit::rules_for(Some(rate_limit::ANONYMOUS_SIGN_IN)), &key).await?;
    state.auth.reject_existing_session(presented.as_ref()).await?;
    bot_check(&state, rate_limit::ANONYMOUS_SIGN_IN, &headers, &client.ip_address).await?;

    let issued = state.auth.create_guest(&client).await?;
    Ok(signed_in(&state, &issued))
}

#[derive(Serialize)]
struct SuccessResponse {
    success: bool,
}

/// Deletes the calling guest with its sessions; 403 `USER_IS_NOT_ANONYMOUS` for real users.
pub async fn delete_anonymous_user(
    State(state): State<AppState>,
    Authenticated(current): Authenticated,
) -> Result<Response, ApiError> {
    state.auth.delete_anonymous_user(&current).await?;

    let mut response = Json(SuccessResponse { success: true }).into_response();
    clear_session(&state, response.headers_mut());
    Ok(response)
}

/// Header that carries the bot-check token, as Better Auth's captcha plugin reads it.
const CAPTCHA_HEADER: &str = "x-captcha-response";

/// Runs the bot check when `path` is one of `captcha.endpoints`.
pub async fn bot_check(state: &AppState, path: &str, headers: &HeaderMap, ip_address: &str) -> Result<(), ApiError> {
    let Some(check) = state.bot_check.as_ref().filter(|check| check.guards(path)) else {
        return Ok(());
    };
    let token = headers.get(CAPTCHA_HEADER).and_then(|value| value.to_str().ok());
    let remote_ip = Some(ip_address).filter(|ip| !ip.is_empty());
    Ok(check.check(token, remote_ip).await?)
}
