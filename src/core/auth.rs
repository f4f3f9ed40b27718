//! The session service: authentication, anonymous sign-in, and what a signed-in user may do.

use tracing::{debug, info};

use super::account::ProfileUpdate;
use super::error::CoreError;
use super::events::OutboxEvent;
use super::random;
use super::session::{ClientInfo, SessionPolicy, SessionStatus};
use super::time::{Clock, Millis};
use super::token::SessionToken;
use crate::store::{SessionRecord, SessionSelector, Store, SweepCounts, UserChanges, UserRecord};

/// Domain of every guest's placeholder email; `.invalid` can never receive mail.
pub const GUEST_EMAIL_DOMAIN: &str = "anonymous.invalid";
/// Display name of every new guest.
pub const GUEST_NAME: &str = "Anonymous";

/// Whether reading a session may extend its expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// Extend the expiry when the last refresh is `update_age` old.
    Allowed,
    /// Leave the session exactly as it is.
    Never,
}

/// A caller's valid session, with its user and the token it presented.
#[derive(Debug, Clone)]
pub struct Current {
    pub session: SessionRecord,
    pub user: UserRecord,
    pub token: SessionToken,
    /// True when this read moved the expiry, so the response re-issues the cookie.
    pub refreshed: bool,
}

/// A session created by a sign-in.
#[derive(Debug, Clone)]
pub struct Issued {
    pub session: SessionRecord,
    pub user: UserRecord,
    pub token: SessionToken,
}

/// Sessions and the anonymous lifecycle over one store.
pub struct Auth {
    store: Store,
    clock: Clock,
    policy: SessionPolicy,
    guests_enabled: bool,
}

impl Auth {
    pub fn new(store: Store, clock: Clock, policy: SessionPolicy, guests_enabled: bool) -> Self {
        Self { store, clock, policy, guests_enabled }
    }

    pub fn guests_enabled(&self) -> bool {
        self.guests_enabled
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn policy(&self) -> &SessionPolicy {
        &self.policy
    }

    pub fn now(&self) -> Millis {
        self.clock.now()
    }

    /// Looks a presented token up in the store. An unknown token is no session; an expired one is
    /// deleted and is no session; a valid one is extended when its refresh is due and `refresh`
    /// allows it.
    ///
    /// # Errors
    /// Only store failures.
    pub async fn authenticate(&self, token: &SessionToken, refresh: Refresh) -> Result<Option<Current>, CoreError> {
        let Some((mut session, user)) = self.store.find_session(&token.hash()).await? else {
            return Ok(None);
        };

        let now = self.clock.now();
        let mut refreshed = false;
        match self.policy.status(&session, now) {
            SessionStatus::Expired => {
                self.store.delete_session(&session.id).await?;
                debug!(session_id = %session.id, user_id = %user.id, "expired session deleted");
                return Ok(None);
            }
            SessionStatus::RefreshDue { expires_at } if refresh == Refresh::Allowed => {
                if !self.store.extend_session(&session.id, expires_at, now).await? {
                    return Ok(None);
                }
                session.expires_at = expires_at;
                session.updated_at = now;
                refreshed = true;
            }
            SessionStatus::RefreshDue { .. } | SessionStatus::Valid => {}
        }

        Ok(Some(Current { session, user, token: token.clone(), refreshed }))
    }

    /// Creates a guest user and its first session.
    ///
    /// Checks, in order: guests enabled, then the fixation guard on the presented session, which is
    /// read without being refreshed: a valid real session gets `AlreadyAuthenticated`, a guest's
    /// `GuestCannotSignInAgain`.
    ///
    /// # Errors
    /// The checks above, or a store failure.
    pub async fn sign_in_anonymous(&self, presented: Option<&SessionToken>, client: &ClientInfo) -> Result<Issued, CoreError> {
        if !self.guests_enabled {
            return Err(CoreError::GuestsDisabled);
        }
        self.reject_existing_session(presented).await?;
        self.create_guest(client).await
    }

    /// Creates a guest user and its first session, with no check; callers run the checks of
    /// [`Auth::sign_in_anonymous`] first.
    ///
    /// # Errors
    /// A store failure.
    pub async fn create_guest(&self, client: &ClientInfo) -> Result<Issued, CoreError> {
        let now = self.clock.now();
        let id = random::new_id();
        let user = UserRecord {
            email: format!("{}@{GUEST_EMAIL_DOMAIN}", id.to_ascii_lowercase()),
            id,
            email_verified: false,
            name: GUEST_NAME.to_string(),
            image: None,
            is_anonymous: true,
            created_at: now,
            updated_at: now,
        };
        let token = SessionToken::generate();
        let session = self.policy.new_session(&user.id, &token, now, client);

        self.store.create_guest(user.clone(), session.clone()).await?;
        debug!(user_id = %user.id, session_id = %session.id, "guest created");
        Ok(Issued { session, user, token })
    }

    /// The fixation guard: a caller who already holds a valid session gets no guest session.
    pub async fn reject_existing_session(&self, presented: Option<&SessionToken>) -> Result<(), CoreError> {
        let Some(token) = presented else { return Ok(()) };
        match self.authenticate(token, Refresh::Never).await? {
            Some(current) if current.user.is_anonymous => Err(CoreError::GuestCannotSignInAgain),
            Some(_) => Err(CoreError::AlreadyAuthenticated),
            None => Ok(()),
        }
    }

    /// Deletes the presented session, if there is one.
    pub async fn sign_out(&self, presented: Option<&SessionToken>) -> Result<(), CoreError> {
        let Some(token) = presented else { return Ok(()) };
        if let Some((session, _)) = self.store.find_session(&token.hash()).await? {
            self.store.delete_session(&session.id).await?;
            debug!(session_id = %session.id, user_id = %session.user_id, "signed out");
        }
        Ok(())
    }

    /// Lists the caller's unexpired sessions; requires a fresh session.
    pub async fn list_sessions(&self, current: &Current) -> Result<Vec<SessionRecord>, CoreError> {
        let now = self.clock.now();
        if !self.policy.is_fresh(&current.session, now) {
            return Err(CoreError::SessionNotFresh);
        }
        Ok(self.store.list_sessions(&current.user.id, now).await?)
    }

    /// Revokes one of the caller's sessions, named by its token or by the revocation handle that
    /// `list-sessions` shows (the session id). Returns true when it was the caller's own session.
    /// A reference to no session of the caller's changes nothing.
    pub async fn revoke_session(&self, current: &Current, reference: &str) -> Result<bool, CoreError> {
        let selector = match SessionToken::parse(reference) {
            Some(token) if token == current.token => return self.revoke_own(current).await.map(|()| true),
            Some(token) => {
                let by_token = self.store.revoke_user_session(&current.user.id, SessionSelector::TokenHash(token.hash())).await?;
                if by_token.is_some() {
                    debug!(user_id = %current.user.id, "session revoked by token");
                    return Ok(false);
                }
                SessionSelector::Id(reference.to_string())
            }
            None => SessionSelector::Id(reference.to_string()),
        };

        let revoked = self.store.revoke_user_session(&current.user.id, selector).await?;
        if let Some(session_id) = &revoked {
            debug!(user_id = %current.user.id, %session_id, "session revoked by handle");
        }
        Ok(revoked.as_deref() == Some(current.session.id.as_str()))
    }

    async fn revoke_own(&self, current: &Current) -> Result<(), CoreError> {
        self.store.delete_session(&current.session.id).await?;
        debug!(user_id = %current.user.id, session_id = %current.session.id, "own session revoked");
        Ok(())
    }

    /// Revokes every session of the caller, the current one included.
    pub async fn revoke_sessions(&self, current: &Current) -> Result<u64, CoreError> {
        let count = self.store.delete_user_sessions(&current.user.id, None).await?;
        debug!(user_id = %current.user.id, count, "all sessions revoked");
        Ok(count)
    }

    /// Revokes every session of the caller but the current one.
    pub async fn revoke_other_sessions(&self, current: &Current) -> Result<u64, CoreError> {
        let keep = Some(current.session.id.clone());
        let count = self.store.delete_user_sessions(&current.user.id, keep).await?;
        debug!(user_id = %current.user.id, count, "other sessions revoked");
        Ok(count)
    }

    /// Applies a validated profile change to the caller.
    pub async fn update_user(&self, current: &Current, update: ProfileUpdate) -> Result<(), CoreError> {
        let changes = UserChanges { name: update.name, image: update.image, updated_at: self.clock.now() };
        if !self.store.update_user(&current.user.id, changes).await? {
            return Err(CoreError::SessionGone);
        }
        debug!(user_id = %current.user.id, "profile updated");
        Ok(())
    }

    /// Deletes a real user with its sessions; requires a fresh session, and refuses guests.
    pub async fn delete_user(&self, current: &Current) -> Result<(), CoreError> {
        if current.user.is_anonymous {
            return Err(CoreError::GuestCannotDelete);
        }
        if !self.policy.is_fresh(&current.session, self.clock.now()) {
            return Err(CoreError::SessionNotFresh);
        }
        let event = OutboxEvent::user_deleted(&current.user.id, self.clock.now());
        if !self.store.delete_user(&current.user.id, false, event).await? {
            return Err(CoreError::SessionGone);
        }
        info!(user_id = %current.user.id, "user deleted");
        Ok(())
    }

    /// Deletes the calling guest with its sessions; refuses real users.
    pub async fn delete_anonymous_user(&self, current: &Current) -> Result<(), CoreError> {
        if !current.user.is_anonymous {
            return Err(CoreError::UserIsNotAnonymous);
        }
        let event = OutboxEvent::user_deleted(&current.user.id, self.clock.now());
        if !self.store.delete_user(&current.user.id, true, event).await? {
            return Err(CoreError::SessionGone);
        }
        debug!(user_id = %current.user.id, "guest deleted itself");
        Ok(())
    }

    /// Deletes expired sessions and verifications.
    pub async fn sweep(&self) -> Result<SweepCounts, CoreError> {
        Ok(self.store.sweep_expired(self.clock.now()).await?)
    }
}
