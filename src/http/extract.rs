//! Extractors: the presented session token, the authenticated caller, the client, JSON bodies.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::header::{self, HeaderMap};
use axum::http::request::Parts;
use axum::http::Extensions;
use percent_encoding::percent_decode_str;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::state::AppState;
use crate::core::auth::{Current, Refresh};
use crate::core::session::ClientInfo;
use crate::core::token::SessionToken;

/// Largest accepted body on auth routes.
pub const AUTH_BODY_LIMIT: usize = 64 * 1024;
/// Longest `User-Agent` stored with a session, in bytes.
const MAX_USER_AGENT_BYTES: usize = 512;

/// The session token a request presents, verified but not yet looked up.
///
/// A bearer value wins over the cookie. A bearer value that fails verification is ignored, as
/// Better Auth's bearer plugin does, and so is a forged or malformed cookie.
pub struct Presented(pub Option<SessionToken>);

impl Presented {
    pub fn from_headers(state: &AppState, headers: &HeaderMap) -> Self {
        if state.bearer {
            if let Some(token) = bearer_token(state, headers) {
                return Self(Some(token));
            }
        }
        let token = state.cookies.read_session(headers).and_then(|value| state.signer.verify(&value));
        Self(token)
    }
}

fn bearer_token(state: &AppState, headers: &HeaderMap) -> Option<SessionToken> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let scheme = value.get(..7)?;
    if !scheme.eq_ignore_ascii_case("bearer ") {
        return None;
    }
    let credential = value[7..].trim();

    if credential.contains('.') {
        let decoded = if credential.contains('%') {
            percent_decode_str(credential).decode_utf8().ok()?.into_owned()
        } else {
            credential.to_string()
        };
        state.signer.verify(&decoded)
    } else if state.bearer_require_signature {
        None
    } else {
        SessionToken::parse(credential)
    }
}

impl FromRequestParts<AppState> for Presented {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Self::from_headers(state, &parts.headers))
    }
}

/// The caller's valid session; 401 `UNAUTHORIZED` without one. Reading it may extend it.
pub struct Authenticated(pub Current);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Presented(token) = Presented::from_headers(state, &parts.headers);
        let token = token.ok_or(ApiError::Unauthorized)?;
        let current = state.auth.authenticate(&token, Refresh::Allowed).await?.ok_or(ApiError::Unauthorized)?;
        record_caller(&current);
        Ok(Self(current))
    }
}

/// Names the caller in the request span, so every later log line of the request carries the ids.
pub fn record_caller(current: &Current) {
    let span = tracing::Span::current();
    span.record("user_id", current.user.id.as_str());
    span.record("session_id", current.session.id.as_str());
}

/// The client's address: the socket peer, or what a trusted proxy reports. `None` only for a
/// request that did not come through the server's accept loop.
pub fn client_address(state: &AppState, extensions: &Extensions, headers: &HeaderMap) -> Option<IpAddr> {
    extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(peer)| state.client_ip.resolve(*peer, headers))
}

/// The client's address and user agent, as stored with new sessions.
pub struct Client(pub ClientInfo);

impl FromRequestParts<AppState> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let ip_address = client_address(state, &parts.extensions, &parts.headers)
            .map(|address| address.to_string())
            .unwrap_or_default();
        let mut user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_string();
        if user_agent.len() > MAX_USER_AGENT_BYTES {
            let mut end = MAX_USER_AGENT_BYTES;
            while !user_agent.is_char_boundary(end) {
                end -= 1;
            }
            user_agent.truncate(end);
        }
        Ok(Self(ClientInfo { ip_address, user_agent }))
    }
}

/// A JSON object body, read up to [`AUTH_BODY_LIMIT`]. An empty body reads as `{}`.
///
/// Rejections: 415 for a body that is not `application/json` (or `application/*+json`), 413 past
/// the limit, 400 `BAD_REQUEST` for invalid JSON, 400 `VALIDATION_ERROR` for a body that is not an
/// object or whose fields have the wrong type, with the field's path in the message.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &AppState) -> Result<Self, ApiError> {
        let value = read_json_object(request, AUTH_BODY_LIMIT).await?;
        deserialize_body(value).map(JsonBody)
    }
}

/// Reads a JSON object body of at most `limit` bytes; an empty body reads as `{}`.
///
/// # Errors
/// As [`JsonBody`]: 415, 413 past `limit`, 400 `BAD_REQUEST` or `VALIDATION_ERROR`.
pub async fn read_json_object(request: Request, limit: usize) -> Result<serde_json::Value, ApiError> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|value| value.to_str().unwrap_or("invalid").to_string());
    let declared_length = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok());
    if declared_length.is_some_and(|length| length > limit as u64) {
        return Err(ApiError::PayloadTooLarge(limit));
    }

    let bytes = axum::body::to_bytes(request.into_body(), limit).await.map_err(|error| {
        if is_length_limit(&error) {
            ApiError::PayloadTooLarge(limit)
        } else {
            ApiError::Validation("[body] the request body could not be read".into())
        }
    })?;
    if bytes.is_empty() {
        return Ok(serde_json::Value::Object(serde_json::Map::new()));
    }

    match content_type.as_deref() {
        None => return Err(ApiError::UnsupportedMediaType("Content-Type is required. Allowed types: application/json")),
        Some(kind) if is_json(kind) => {}
        Some(_) => return Err(ApiError::UnsupportedMediaType("Content-Type is not allowed. Allowed types: application/json")),
    }
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| ApiError::InvalidJson)?;
    match value {
        serde_json::Value::Null => Ok(serde_json::Value::Object(serde_json::Map::new())),
        serde_json::Value::Object(_) => Ok(value),
        other => Err(ApiError::Validation(format!("[body] Invalid input: expected object, received {}", json_kind(&other)))),
    }
}

/// Reads a typed body out of a JSON object, naming the failing field's path in the error.
///
/// # Errors
/// 400 `VALIDATION_ERROR` for a missing field or a field of the wrong type.
pub fn deserialize_body<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner().to_string();
        let location = if path == "." { "body".to_string() } else { format!("body.{path}") };
        ApiError::Validation(format!("[{location}] {inner}"))
    })
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn is_length_limit(error: &axum::Error) -> bool {
    let mut source: Option<&dyn std::error::Error> = Some(error);
    while let Some(current) = source {
        if current.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = current.source();
    }
    false
}

/// Names a JSON value's type the way validation messages do.
pub fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("application/json; charset=utf-8"));
        assert!(is_json("Application/JSON"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/x-www-form-urlencoded"));
        assert!(!is_json("multipart/form-data; boundary=x"));
    }
}
