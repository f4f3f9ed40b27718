//! Better Auth's JSON shapes for users and sessions, and the session cookie on responses.

use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::state::AppState;
use crate::core::auth::{Current, Issued};
use crate::core::token::SessionToken;
use crate::store::{SessionRecord, UserRecord};

/// Header that hands native and local-first clients their signed bearer value.
pub const SET_AUTH_TOKEN: HeaderName = HeaderName::from_static("set-auth-token");

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserJson<'a> {
    name: &'a str,
    email: &'a str,
    email_verified: bool,
    image: Option<&'a str>,
    created_at: String,
    updated_at: String,
    is_anonymous: bool,
    id: &'a str,
}

impl<'a> From<&'a UserRecord> for UserJson<'a> {
    fn from(user: &'a UserRecord) -> Self {
        Self {
            name: &user.name,
            email: &user.email,
            email_verified: user.email_verified,
            image: user.image.as_deref(),
            created_at: user.created_at.to_wire(),
            updated_at: user.updated_at.to_wire(),
            is_anonymous: user.is_anonymous,
            id: &user.id,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionJson<'a> {
    expires_at: String,
    /// The caller's own raw token, or for other sessions a revocation handle.
    token: &'a str,
    created_at: String,
    updated_at: String,
    ip_address: &'a str,
    user_agent: &'a str,
    user_id: &'a str,
    id: &'a str,
}

impl<'a> SessionJson<'a> {
    pub fn new(session: &'a SessionRecord, token: &'a str) -> Self {
        Self {
            expires_at: session.expires_at.to_wire(),
            token,
            created_at: session.created_at.to_wire(),
            updated_at: session.updated_at.to_wire(),
            ip_address: &session.ip_address,
            user_agent: &session.user_agent,
            user_id: &session.user_id,
            id: &session.id,
        }
    }
}

/// Adds the session cookie and, in bearer mode, `set-auth-token` for a created or refreshed session.
pub fn set_session(state: &AppState, headers: &mut HeaderMap, token: &SessionToken, session: &SessionRecord) {
    let signed = state.signer.sign(token);
    let max_age = state.auth.now().seconds_until(session.expires_at);
    headers.append(header::SET_COOKIE, state.cookies.set_session(&signed, max_age));

    if state.bearer {
        let value = HeaderValue::from_str(&signed).expect("signed tokens are visible ASCII");
        headers.insert(SET_AUTH_TOKEN, value);
        headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("set-auth-token"));
    }
}

#[derive(Serialize)]
struct SignInBody<'a> {
    token: &'a str,
    user: UserJson<'a>,
}

/// Builds the answer of every sign-in: `{token, user}` with the session cookie and, in bearer
/// mode, `set-auth-token`.
pub fn signed_in(state: &AppState, issued: &Issued) -> Response {
    let body = SignInBody { token: issued.token.expose(), user: UserJson::from(&issued.user) };
    let mut response = Json(body).into_response();
    set_session(state, response.headers_mut(), &issued.token, &issued.session);
    response
}

/// Adds the `Set-Cookie` headers that clear every session cookie.
pub fn clear_session(state: &AppState, headers: &mut HeaderMap) {
    for cookie in state.cookies.clear_session() {
        headers.append(header::SET_COOKIE, cookie);
    }
}

/// Builds a JSON response that re-issues the session cookie when reading the session extended it.
pub fn json_for(state: &AppState, current: &Current, body: impl Serialize) -> Response {
    let mut response = Json(body).into_response();
    if current.refreshed {
        set_session(state, response.headers_mut(), &current.token, &current.session);
    }
    response
}
