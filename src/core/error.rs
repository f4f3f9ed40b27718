//! Failures of the core rules, each one a decision the caller must see.

use crate::store::StoreError;

/// Why a core operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// Anonymous sign-in is switched off (`anonymous.enabled = false`).
    #[error("anonymous sign-in is disabled")]
    GuestsDisabled,
    /// A caller with a valid real session asked for a guest session.
    #[error("already signed in")]
    AlreadyAuthenticated,
    /// A guest asked for another guest session.
    #[error("anonymous users cannot sign in again anonymously")]
    GuestCannotSignInAgain,
    /// The operation requires a session younger than `session.fresh_age`.
    #[error("the session is not fresh")]
    SessionNotFresh,
    /// `delete-anonymous-user` was called by a real user.
    #[error("the user is not anonymous")]
    UserIsNotAnonymous,
    /// `delete-user` was called by a guest, which must use `delete-anonymous-user`.
    #[error("anonymous users cannot delete themselves with delete-user")]
    GuestCannotDelete,
    /// The user or session vanished between the check and the write.
    #[error("the session ended during the request")]
    SessionGone,
    /// The code is wrong, or no code was issued for the email.
    #[error("invalid code")]
    InvalidOtp,
    /// The code expired.
    #[error("the code expired")]
    OtpExpired,
    /// The code used up its tries and stays burned until it expires.
    #[error("too many attempts")]
    TooManyAttempts,
    /// A rate limit was reached; retry after the given time.
    #[error("rate limited")]
    RateLimited { limit: u32, retry_after: std::time::Duration },
    /// The code could not be delivered.
    #[error("the email could not be delivered")]
    EmailDeliveryFailed,
    /// A guarded endpoint was called without `x-captcha-response`.
    #[error("missing bot-check token")]
    MissingCaptchaResponse,
    /// The bot-check token was used before, or the provider rejected it.
    #[error("bot check failed")]
    CaptchaVerificationFailed,
    /// The bot check could not be done.
    #[error("bot check unavailable")]
    CaptchaUnavailable,
    /// A guest asked the sync gateway for access.
    #[error("anonymous users cannot sync")]
    AnonymousSyncForbidden,
    /// The device id belongs to another user.
    #[error("the device id is taken")]
    DeviceIdTaken,
    /// The device was revoked.
    #[error("the device is disconnected")]
    DeviceDisconnected,
    /// The user has `sync.max_devices` devices already.
    #[error("the device limit is reached")]
    DeviceLimitReached,
    /// The device never asked for a sync token.
    #[error("the device is not registered")]
    DeviceNotRegistered,
    /// The rate limiter's shared store cannot be reached.
    #[error("the rate limiter is unavailable")]
    LimiterUnavailable,
    /// No signing key is active and readable by the configured secrets.
    #[error("no signing key is available")]
    NoSigningKey,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}
