//! `POST /email-otp/send-verification-otp` and `POST /sign-in/email-otp`.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use crate::core::email::Email;
use crate::core::rate_limit::ip_key;
use crate::http::error::ApiError;
use crate::http::routes::anonymous::bot_check;
use crate::http::extract::{Client, JsonBody, Presented};
use crate::http::state::AppState;
use crate::http::wire::signed_in;

#[derive(Deserialize)]
pub struct SendBody {
    email: String,
    #[serde(rename = "type")]
    kind: String,
}

/// Sends a sign-in code. The response is `{success: true}` whether or not the email has an account.
pub async fn send_verification_otp(
    State(state): State<AppState>,
    headers: HeaderMap,
    Client(client): Client,
    JsonBody(body): JsonBody<SendBody>,
) -> Result<Response, ApiError> {
    state.origins.check_sign_in(&headers)?;
    let email = Email::parse(&body.email).map_err(ApiError::InvalidEmail)?;
    if body.kind != "sign-in" {
        return Err(ApiError::UnsupportedOtpType);
    }
    bot_check(&state, "/email-otp/send-verification-otp", &headers, &client.ip_address).await?;

    state.codes.send_code(&email).await?;
    Ok(Json(serde_json::json!({ "success": true })).into_response())
}

#[derive(Deserialize)]
pub struct SignInBody {
    email: String,
    otp: String,
}

/// Signs in with a code; a guest session on the request is promoted to the signed-in account.
pub async fn sign_in_email_otp(
    State(state): State<AppState>,
    Presented(presented): Presented,
    Client(client): Client,
    JsonBody(body): JsonBody<SignInBody>,
) -> Result<Response, ApiError> {
    let email = Email::parse(&body.email).map_err(ApiError::InvalidEmail)?;
    let client_key = match client.ip_address.parse() {
        Ok(address) => ip_key(address),
        Err(_) => client.ip_address.clone(),
    };

    let issued = state.codes.sign_in(&email, &body.otp, presented.as_ref(), &client, &client_key).await?;
    Ok(signed_in(&state, &issued))
}
