//! `get-session`, `sign-out`, `list-sessions` and the three revocation routes.

use axum::extract::{Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::core::auth::Refresh;
use crate::http::error::ApiError;
use crate::http::extract::{record_caller, Authenticated, JsonBody, Presented};
use crate::http::state::AppState;
use crate::http::wire::{clear_session, json_for, set_session, SessionJson, UserJson};

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct GetSessionQuery {
    #[serde(default, deserialize_with = "query_bool")]
    disable_refresh: bool,
    /// Accepted for compatibility; Doorman keeps no cookie cache.
    #[serde(default, deserialize_with = "query_bool")]
    disable_cookie_cache: bool,
}

fn query_bool<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    let text = String::deserialize(deserializer)?;
    match text.as_str() {
        "true" | "1" | "" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(serde::de::Error::custom(format!("expected true or false, found {text:?}"))),
    }
}

#[derive(Serialize)]
struct SessionAndUser<'a> {
    session: SessionJson<'a>,
    user: UserJson<'a>,
}

/// `{session, user}` for a valid session, else `null`. An expired or revoked session also clears
/// the cookies; a forged one leaves them alone. Never cached by clients or proxies.
pub async fn get_session(
    State(state): State<AppState>,
    Presented(presented): Presented,
    query: Result<Query<GetSessionQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|rejection| ApiError::Validation(format!("[query] {}", rejection.body_text())))?;
    let _ = query.disable_cookie_cache;

    let mut response = match presented {
        None => Json(serde_json::Value::Null).into_response(),
        Some(token) => {
            let refresh = if query.disable_refresh { Refresh::Never } else { Refresh::Allowed };
            match state.auth.authenticate(&token, refresh).await? {
                Some(current) => {
                    record_caller(&current);
                    let body = SessionAndUser {
                        session: SessionJson::new(&current.session, current.token.expose()),
                        user: UserJson::from(&current.user),
                    };
                    json_for(&state, &current, body)
                }
                None => {
                    let mut response = Json(serde_json::Value::Null).into_response();
                    clear_session(&state, response.headers_mut());
                    response
                }
            }
        }
    };

    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// Sign-out body; Better Auth's `disableRedirect` and `state` are accepted and have no effect,
/// since no provider here takes part in sign-out.
#[derive(Deserialize, Default)]
pub struct SignOutBody {
    #[serde(rename = "callbackURL")]
    callback_url: Option<String>,
}

/// Deletes the presented session, if any, and always clears the cookies.
pub async fn sign_out(
    State(state): State<AppState>,
    Presented(presented): Presented,
    JsonBody(body): JsonBody<SignOutBody>,
) -> Result<Response, ApiError> {
    if let Some(url) = &body.callback_url {
        state.origins.check_callback_url(url)?;
    }

    state.auth.sign_out(presented.as_ref()).await?;

    let mut response = Json(serde_json::json!({ "success": true })).into_response();
    clear_session(&state, response.headers_mut());
    Ok(response)
}

/// Lists the caller's unexpired sessions. The caller's own entry carries its token; every other entry
/// carries a revocation handle, which `revoke-session` accepts and which grants no access.
pub async fn list_sessions(
    State(state): State<AppState>,
    Authenticated(current): Authenticated,
) -> Result<Response, ApiError> {
    let sessions = state.auth.list_sessions(&current).await?;

    let entries: Vec<SessionJson> = sessions
        .iter()
        .map(|session| {
            let token = if session.id == current.session.id { current.token.expose() } else { session.id.as_str() };
            SessionJson::new(session, token)
        })
        .collect();
    Ok(json_for(&state, &current, entries))
}

#[derive(Deserialize)]
pub struct RevokeSessionBody {
    token: String,
}

#[derive(Serialize)]
struct StatusResponse {
    status: bool,
}

/// Revokes one of the caller's sessions by token or revocation handle. Anything else still
/// returns `{status: true}` and changes nothing, so the route reveals no other user's sessions.
pub async fn revoke_session(
    State(state): State<AppState>,
    Authenticated(current): Authenticated,
    JsonBody(body): JsonBody<RevokeSessionBody>,
) -> Result<Response, ApiError> {
    let own = state.auth.revoke_session(&current, &body.token).await?;

    let mut response = Json(StatusResponse { status: true }).into_response();
    if own {
        clear_session(&state, response.headers_mut());
    } else if current.refreshed {
        set_session(&state, response.headers_mut(), &current.token, &current.session);
    }
    Ok(response)
}

/// Revokes every session of the caller and clears the cookies.
pub async fn revoke_sessions(
    State(state): State<AppState>,
    Authenticated(current): Authenticated,
) -> Result<Response, ApiError> {
    state.auth.revoke_sessions(&current).await?;

    let mut response = Json(StatusResponse { status: true }).into_response();
    clear_session(&state, response.headers_mut());
    Ok(response)
}

/// Revokes every session of the caller but the current one.
pub async fn revoke_other_sessions(
    State(state): State<AppState>,
    Authenticated(current): Authenticated,
) -> Result<Response, ApiError> {
    state.auth.revoke_other_sessions(&current).await?;
    Ok(json_for(&state, &current, StatusResponse { status: true }))
}
