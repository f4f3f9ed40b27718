//! The JSON error responses of the HTTP layer: `{"code": "UPPER_SNAKE", "message": "..."}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::core::error::CoreError;
use crate::store::StoreError;

/// Seconds a client should wait before retrying a request that met an unavailable store.
const RETRY_AFTER_SECONDS: &str = "1";

/// Every error the HTTP layer answers with. Each variant's doc gives its status and wire code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `VALIDATION_ERROR`: a body or query field has the wrong type or breaks a limit.
    #[error("{0}")]
    Validation(String),
    /// 400 `BAD_REQUEST`: the body is not valid JSON.
    #[error("Invalid JSON in request body")]
    InvalidJson,
    /// 415 `UNSUPPORTED_MEDIA_TYPE`: a body that is not `application/json`.
    #[error("{0}")]
    UnsupportedMediaType(&'static str),
    /// 413 `PAYLOAD_TOO_LARGE`: the body exceeds the route's limit.
    #[error("The request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// 408 `REQUEST_TIMEOUT`: the request took longer than `server.request_timeout`.
    #[error("The request took longer than the server's request timeout")]
    RequestTimeout,
    /// 401 `UNAUTHORIZED`: the route needs a valid session.
    #[error("Unauthorized")]
    Unauthorized,
    /// 404 `NOT_FOUND`: no such route or method, or a feature that is switched off.
    #[error("Not found")]
    NotFound,
    /// 403 `MISSING_OR_NULL_ORIGIN`: a cookie-carrying request without `Origin` or `Referer`.
    #[error("Missing or null Origin")]
    MissingOrNullOrigin,
    /// 403 `INVALID_ORIGIN`: a cookie-carrying request from an untrusted origin.
    #[error("Invalid origin")]
    InvalidOrigin,
    /// 403 `INVALID_CALLBACK_URL`: a `callbackURL` that is neither relative nor trusted.
    #[error("Invalid callbackURL")]
    InvalidCallbackUrl,
    /// 403 `CROSS_SITE_NAVIGATION_LOGIN_BLOCKED`: a sign-in by cross-site navigation.
    #[error("Cross-site navigation login blocked. This request appears to be a CSRF attack.")]
    CrossSiteNavigationLoginBlocked,
    /// 400 `ALREADY_AUTHENTICATED`: a real session asked for a guest session.
    #[error("Already signed in; sign out before signing in anonymously")]
    AlreadyAuthenticated,
    /// 400 `ANONYMOUS_USERS_CANNOT_SIGN_IN_AGAIN_ANONYMOUSLY`.
    #[error("Anonymous users cannot sign in again anonymously")]
    AnonymousCannotSignInAgain,
    /// 403 `USER_IS_NOT_ANONYMOUS`: `delete-anonymous-user` called by a real user.
    #[error("User is not anonymous")]
    UserIsNotAnonymous,
    /// 403 `ANONYMOUS_USER_CANNOT_DELETE`: `delete-user` called by a guest.
    #[error("Anonymous users delete themselves with delete-anonymous-user")]
    AnonymousUserCannotDelete,
    /// 403 `SESSION_NOT_FRESH`: `list-sessions` with a session older than `session.fresh_age`.
    #[error("Session is not fresh")]
    SessionNotFresh,
    /// 400 `SESSION_EXPIRED`: `delete-user` with a session older than `session.fresh_age`.
    #[error("Session expired. Re-authenticate to perform this action.")]
    SessionExpired,
    /// 400 `EMAIL_CAN_NOT_BE_UPDATED`: `update-user` with an `email` field.
    #[error("Email can not be updated")]
    EmailCanNotBeUpdated,
    /// 400 `FIELD_NOT_ALLOWED`: `update-user` setting a field clients may not set.
    #[error("{0} is not allowed to be set")]
    FieldNotAllowed(&'static str),
    /// 400 `NO_FIELDS_TO_UPDATE`: `update-user` with nothing to change.
    #[error("No fields to update")]
    NoFieldsToUpdate,
    /// 400 `CREDENTIAL_ACCOUNT_NOT_FOUND`: a password was sent, but accounts have none.
    #[error("Credential account not found")]
    CredentialAccountNotFound,
    /// 404 `INVALID_TOKEN`: a deletion token was sent, but none was ever issued.
    #[error("Invalid token")]
    InvalidToken,
    /// 400 `INVALID_EMAIL`: an address that is malformed or under `.invalid`.
    #[error("Invalid email: {0}")]
    InvalidEmail(&'static str),
    /// 400 `UNSUPPORTED_OTP_TYPE`: a code type other than `sign-in`.
    #[error("Only codes of type sign-in are supported")]
    UnsupportedOtpType,
    /// 400 `INVALID_OTP`: a wrong code, or none issued for the email.
    #[error("Invalid OTP")]
    InvalidOtp,
    /// 400 `OTP_EXPIRED`.
    #[error("OTP expired")]
    OtpExpired,
    /// 403 `TOO_MANY_ATTEMPTS`: the code is burned until it expires.
    #[error("Too many attempts")]
    TooManyAttempts,
    /// 429 `RATE_LIMITED` with `Retry-After` and `RateLimit-*` headers.
    #[error("Too many requests; retry after {} seconds", retry_after_seconds(*.retry_after))]
    RateLimited { limit: u32, retry_after: std::time::Duration },
    /// 503 `EMAIL_DELIVERY_FAILED`: the code could not be sent.
    #[error("The email could not be delivered; retry shortly")]
    EmailDeliveryFailed,
    /// 400 `MISSING_CAPTCHA_RESPONSE`: a guarded endpoint without `x-captcha-response`.
    #[error("Missing CAPTCHA response")]
    MissingCaptchaResponse,
    /// 403 `CAPTCHA_VERIFICATION_FAILED`: a token used before, or rejected by the provider.
    #[error("Captcha verification failed")]
    CaptchaVerificationFailed,
    /// 503 `CAPTCHA_UNAVAILABLE`: the bot check could not be done; retry shortly.
    #[error("The bot check is unavailable; retry shortly")]
    CaptchaUnavailable,
    /// 403 `ORIGIN_NOT_ALLOWED`: a sync request from an untrusted origin.
    #[error("Origin not allowed")]
    OriginNotAllowed,
    /// 403 `ANONYMOUS_SYNC_FORBIDDEN`: guests never sync.
    #[error("Anonymous users cannot sync; sign in first")]
    AnonymousSyncForbidden,
    /// 400 `DEVICE_ID_REQUIRED`: no `X-Device-ID` header.
    #[error("The X-Device-ID header is required")]
    DeviceIdRequired,
    /// 400 `INVALID_DEVICE_ID`: not 1 to 128 characters of `[A-Za-z0-9_-]`.
    #[error("X-Device-ID must be 1 to 128 characters of letters, digits, '_' or '-'")]
    InvalidDeviceId,
    /// 409 `DEVICE_ID_TAKEN`: the device id belongs to another user.
    #[error("The device id is registered to another user")]
    DeviceIdTaken,
    /// 403 `DEVICE_DISCONNECTED`: the device was revoked.
    #[error("The device is disconnected")]
    DeviceDisconnected,
    /// 409 `DEVICE_LIMIT_REACHED`: the user has the maximum number of devices.
    #[error("The device limit is reached; revoke a device first")]
    DeviceLimitReached,
    /// 403 `DEVICE_NOT_REGISTERED`: an upload from a device that never asked for a sync token.
    #[error("The device is not registered; request a sync token first")]
    DeviceNotRegistered,
    /// 413 `PAYLOAD_TOO_LARGE`: an upload batch with more operations than `sync.max_operations`.
    #[error("The batch has more than {0} operations")]
    TooManyOperations(u32),
    /// 503 `SERVICE_UNAVAILABLE` with `Retry-After`: the store cannot be reached.
    #[error("The service is temporarily unavailable; retry shortly")]
    Unavailable(#[source] anyhow::Error),
    /// 500 `INTERNAL_SERVER_ERROR`: a bug. The cause is logged, never sent.
    #[error("Internal Server Error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// The HTTP status and wire code of this error.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        use ApiError::*;
        match self {
            Validation(_) => (StatusCode::BAD_REQUEST, "VALIDATION_ERROR"),
            InvalidJson => (StatusCode::BAD_REQUEST, "BAD_REQUEST"),
            UnsupportedMediaType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE"),
            PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE"),
            RequestTimeout => (StatusCode::REQUEST_TIMEOUT, "REQUEST_TIMEOUT"),
            Unauthorized => (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
            NotFound => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            MissingOrNullOrigin => (StatusCode::FORBIDDEN, "MISSING_OR_NULL_ORIGIN"),
            InvalidOrigin => (StatusCode::FORBIDDEN, "INVALID_ORIGIN"),
            InvalidCallbackUrl => (StatusCode::FORBIDDEN, "INVALID_CALLBACK_URL"),
            CrossSiteNavigationLoginBlocked => (StatusCode::FORBIDDEN, "CROSS_SITE_NAVIGATION_LOGIN_BLOCKED"),
            AlreadyAuthenticated => (StatusCode::BAD_REQUEST, "ALREADY_AUTHENTICATED"),
            AnonymousCannotSignInAgain => (StatusCode::BAD_REQUEST, "ANONYMOUS_USERS_CANNOT_SIGN_IN_AGAIN_ANONYMOUSLY"),
            UserIsNotAnonymous => (StatusCode::FORBIDDEN, "USER_IS_NOT_ANONYMOUS"),
            AnonymousUserCannotDelete => (StatusCode::FORBIDDEN, "ANONYMOUS_USER_CANNOT_DELETE"),
            SessionNotFresh => (StatusCode::FORBIDDEN, "SESSION_NOT_FRESH"),
            SessionExpired => (StatusCode::BAD_REQUEST, "SESSION_EXPIRED"),
            EmailCanNotBeUpdated => (StatusCode::BAD_REQUEST, "EMAIL_CAN_NOT_BE_UPDATED"),
            FieldNotAllowed(_) => (StatusCode::BAD_REQUEST, "FIELD_NOT_ALLOWED"),
            NoFieldsToUpdate => (StatusCode::BAD_REQUEST, "NO_FIELDS_TO_UPDATE"),
            CredentialAccountNotFound => (StatusCode::BAD_REQUEST, "CREDENTIAL_ACCOUNT_NOT_FOUND"),
            InvalidToken => (StatusCode::NOT_FOUND, "INVALID_TOKEN"),
            InvalidEmail(_) => (StatusCode::BAD_REQUEST, "INVALID_EMAIL"),
            UnsupportedOtpType => (StatusCode::BAD_REQUEST, "UNSUPPORTED_OTP_TYPE"),
            InvalidOtp => (StatusCode::BAD_REQUEST, "INVALID_OTP"),
            OtpExpired => (StatusCode::BAD_REQUEST, "OTP_EXPIRED"),
            TooManyAttempts => (StatusCode::FORBIDDEN, "TOO_MANY_ATTEMPTS"),
            RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED"),
            EmailDeliveryFailed => (StatusCode::SERVICE_UNAVAILABLE, "EMAIL_DELIVERY_FAILED"),
            MissingCaptchaResponse => (StatusCode::BAD_REQUEST, "MISSING_CAPTCHA_RESPONSE"),
            CaptchaVerificationFailed => (StatusCode::FORBIDDEN, "CAPTCHA_VERIFICATION_FAILED"),
            CaptchaUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "CAPTCHA_UNAVAILABLE"),
            OriginNotAllowed => (StatusCode::FORBIDDEN, "ORIGIN_NOT_ALLOWED"),
            AnonymousSyncForbidden => (StatusCode::FORBIDDEN, "ANONYMOUS_SYNC_FORBIDDEN"),
            DeviceIdRequired => (StatusCode::BAD_REQUEST, "DEVICE_ID_REQUIRED"),
            InvalidDeviceId => (StatusCode::BAD_REQUEST, "INVALID_DEVICE_ID"),
            DeviceIdTaken => (StatusCode::CONFLICT, "DEVICE_ID_TAKEN"),
            DeviceDisconnected => (StatusCode::FORBIDDEN, "DEVICE_DISCONNECTED"),
            DeviceLimitReached => (StatusCode::CONFLICT, "DEVICE_LIMIT_REACHED"),
            DeviceNotRegistered => (StatusCode::FORBIDDEN, "DEVICE_NOT_REGISTERED"),
            TooManyOperations(_) => (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE"),
            Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE"),
            Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_SERVER_ERROR"),
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        match &self {
            ApiError::Internal(cause) => tracing::error!(error = format!("{cause:#}"), "request failed"),
            ApiError::Unavailable(cause) => tracing::warn!(error = format!("{cause:#}"), "store unavailable"),
            _ => tracing::debug!(code, "request rejected"),
        }

        let message = self.to_string();
        let mut response = (status, axum::Json(ErrorBody { code, message: &message })).into_response();
        let headers = response.headers_mut();
        match self {
            ApiError::Unavailable(_) | ApiError::EmailDeliveryFailed => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
            }
            ApiError::RateLimited { limit, retry_after } => {
                let seconds = HeaderValue::from(retry_after_seconds(retry_after));
                headers.insert(header::RETRY_AFTER, seconds.clone());
                headers.insert("ratelimit-limit", HeaderValue::from(limit));
                headers.insert("ratelimit-remaining", HeaderValue::from_static("0"));
                headers.insert("ratelimit-reset", seconds);
            }
            _ => {}
        }
        response
    }
}

/// Whole seconds to wait, rounded up and at least one.
fn retry_after_seconds(duration: std::time::Duration) -> u64 {
    duration.as_millis().div_ceil(1000).max(1) as u64
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(cause) => ApiError::Unavailable(cause),
            StoreError::Conflict(message) => ApiError::Internal(anyhow::anyhow!("unexpected conflict: {message}")),
            StoreError::Other(cause) => ApiError::Internal(cause),
        }
    }
}

impl From<CoreError> for ApiError {
    fn from(error: CoreError) -> Self {
        match error {
            CoreError::GuestsDisabled => ApiError::NotFound,
            CoreError::AlreadyAuthenticated => ApiError::AlreadyAuthenticated,
            CoreError::GuestCannotSignInAgain => ApiError::AnonymousCannotSignInAgain,
            CoreError::SessionNotFresh => ApiError::SessionNotFresh,
            CoreError::UserIsNotAnonymous => ApiError::UserIsNotAnonymous,
            CoreError::GuestCannotDelete => ApiError::AnonymousUserCannotDelete,
            CoreError::SessionGone => ApiError::Unauthorized,
            CoreError::InvalidOtp => ApiError::InvalidOtp,
            CoreError::OtpExpired => ApiError::OtpExpired,
            CoreError::TooManyAttempts => ApiError::TooManyAttempts,
            CoreError::RateLimited { limit, retry_after } => ApiError::RateLimited { limit, retry_after },
            CoreError::EmailDeliveryFailed => ApiError::EmailDeliveryFailed,
            CoreError::MissingCaptchaResponse => ApiError::MissingCaptchaResponse,
            CoreError::CaptchaVerificationFailed => ApiError::CaptchaVerificationFailed,
            CoreError::CaptchaUnavailable => ApiError::CaptchaUnavailable,
            CoreError::AnonymousSyncForbidden => ApiError::AnonymousSyncForbidden,
            CoreError::DeviceIdTaken => ApiError::DeviceIdTaken,
            CoreError::DeviceDisconnected => ApiError::DeviceDisconnected,
            CoreError::DeviceLimitReached => ApiError::DeviceLimitReached,
            CoreError::DeviceNotRegistered => ApiError::DeviceNotRegistered,
            CoreError::LimiterUnavailable => ApiError::Unavailable(anyhow::anyhow!("the rate limiter is unavailable")),
            CoreError::NoSigningKey => ApiError::Internal(anyhow::anyhow!("no signing key is available")),
            CoreError::Store(error) => error.into(),
        }
    }
}
