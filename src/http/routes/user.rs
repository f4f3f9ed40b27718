//! `POST /update-user` and `POST /delete-user`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::core::account::ProfileUpdate;
use crate::core::error::CoreError;
use crate::http::error::ApiError;
use crate::http::extract::{json_kind, Authenticated, JsonBody};
use crate::http::state::AppState;
use crate::http::wire::{clear_session, json_for};

/// Changes the caller's `name` and `image`; other fields, such as `emailVerified` or `id`, are
/// dropped as Better Auth drops them. `email` returns 400 `EMAIL_CAN_NOT_BE_UPDATED`, a
/// truthy `isAnonymous` 400 `FIELD_NOT_ALLOWED`, and a body with nothing to change 400
/// `NO_FIELDS_TO_UPDATE`.
pub async fn update_user(
    State(state): State<AppState>,
    Authenticated(current): Authenticated,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> Result<Response, ApiError> {
    let update = parse_update(&body)?;
    if update.is_empty() {
        return Err(ApiError::NoFieldsToUpdate);
    }

    state.auth.update_user(&current, update).await?;

    let mut current = current;
    // Better Auth re-sets the session cookie on every profile change.
    current.refreshed = true;
    Ok(json_for(&state, &current, serde_json::json!({ "status": true })))
}

fn parse_update(body: &Map<String, Value>) -> Result<ProfileUpdate, ApiError> {
    if body.contains_key("email") {
        return Err(ApiError::EmailCanNotBeUpdated);
    }
    if body.get("isAnonymous").is_some_and(is_truthy) {
        return Err(ApiError::FieldNotAllowed("isAnonymous"));
    }

    let name = match body.get("name") {
        None => None,
        Some(Value::String(name)) => Some(name.clone()),
        Some(other) => return Err(expected("name", "string", other)),
    };
    let image = match body.get("image") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(image)) => Some(Some(image.clone())),
        Some(other) => return Err(expected("image", "string or null", other)),
    };
    ProfileUpdate::new(name, image)
        .map_err(|invalid| ApiError::Validation(format!("[body.{}] {}", invalid.field, invalid.reason)))
}

fn expected(field: &str, kind: &str, found: &Value) -> ApiError {
    ApiError::Validation(format!("[body.{field}] Invalid input: expected {kind}, received {}", json_kind(found)))
}

fn is_truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(flag) => *flag,
        Value::Number(number) => number.as_f64().is_some_and(|n| n != 0.0),
        Value::String(text) => !text.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

#[derive(Deserialize, Default)]
pub struct DeleteUserBody {
    #[serde(rename = "callbackURL")]
    callback_url: Option<String>,
    password: Option<String>,
    token: Option<String>,
}

/// Deletes the caller with its sessions. Guests get 403 `ANONYMOUS_USER_CANNOT_DELETE`; a session
/// older than `session.fresh_age` gets 400 `SESSION_EXPIRED`. Doorman has no passwords and sends no
/// deletion emails, so a `password` or `token` in the body names nothing that exists.
pub async fn delete_user(
    State(state): State<AppState>,
    Authenticated(current): Authenticated,
    JsonBody(body): JsonBody<DeleteUserBody>,
) -> Result<Response, ApiError> {
    if let Some(url) = &body.callback_url {
        state.origins.check_callback_url(url)?;
    }
    if body.password.is_some() {
        return Err(ApiError::CredentialAccountNotFound);
    }
    if body.token.is_some() {
        return Err(ApiError::InvalidToken);
    }

    state.auth.delete_user(&current).await.map_err(|error| match error {
        CoreError::SessionNotFresh => ApiError::SessionExpired,
        other => other.into(),
    })?;

    let mut response = Json(serde_json::json!({ "success": true, "message": "User deleted" })).into_response();
    clear_session(&state, response.headers_mut());
    Ok(response)
}
