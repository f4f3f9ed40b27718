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
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}
