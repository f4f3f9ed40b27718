//! Session lifetimes: sliding expiry, the absolute cap, freshness.

use std::time::Duration;

use super::random;
use super::time::Millis;
use super::token::SessionToken;
use crate::config::SessionConfig;
use crate::store::SessionRecord;

/// Where a request comes from, as stored with the sessions it creates.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    /// The client address, or `""` when unknown.
    pub ip_address: String,
    /// The `User-Agent` header, or `""` when absent.
    pub user_agent: String,
}

/// What a session's times allow at a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStatus {
    /// Past its expiry or its absolute lifetime: refused, and deleted.
    Expired,
    /// Valid, and the last refresh is recent enough.
    Valid,
    /// Valid, and a read now moves the expiry to `expires_at`.
    RefreshDue { expires_at: Millis },
}

/// The session lifetimes from `[session]`.
#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    /// Lifetime from the last refresh.
    pub expires_in: Duration,
    /// Age of the last refresh after which a read extends the session.
    pub update_age: Duration,
    /// Age below which a session counts as fresh.
    pub fresh_age: Duration,
    /// Absolute lifetime from creation.
    pub max_age: Duration,
}

impl SessionPolicy {
    pub fn from_config(config: &SessionConfig) -> Self {
        Self {
            expires_in: config.expires_in.get(),
            update_age: config.update_age.get(),
            fresh_age: config.fresh_age.get(),
            max_age: config.max_age.get(),
        }
    }

    /// Builds the row of a new session for `user_id`; only the token's hash goes into it.
    pub fn new_session(&self, user_id: &str, token: &SessionToken, now: Millis, client: &ClientInfo) -> SessionRecord {
        SessionRecord {
            id: random::new_id(),
            user_id: user_id.to_string(),
            token_hash: token.hash().0,
            expires_at: (now + self.expires_in).min(now + self.max_age),
            created_at: now,
            updated_at: now,
            ip_address: client.ip_address.clone(),
            user_agent: client.user_agent.clone(),
        }
    }

    /// Decides whether `session` is valid at `now`, and whether a read should extend it.
    ///
    /// The expiry slides by `expires_in` once the last refresh is `update_age` old, and never past
    /// `created_at + max_age`.
    pub fn status(&self, session: &SessionRecord, now: Millis) -> SessionStatus {
        let absolute_end = session.created_at + self.max_age;
        if now >= session.expires_at || now >= absolute_end {
            return SessionStatus::Expired;
        }

        let last_refresh = session.expires_at - self.expires_in;
        let extended = (now + self.expires_in).min(absolute_end);
        if last_refresh + self.update_age <= now && extended > session.expires_at {
            SessionStatus::RefreshDue { expires_at: extended }
        } else {
            SessionStatus::Valid
        }
    }

    /// True while the session is younger than `fresh_age`, as sensitive operations require.
    pub fn is_fresh(&self, session: &SessionRecord, now: Millis) -> bool {
        now < session.created_at + self.fresh_age
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn policy() -> SessionPolicy {
        SessionPolicy { expires_in: 7 * DAY, update_age: DAY, fresh_age: DAY, max_age: 30 * DAY }
    }

    fn session_at(now: Millis) -> SessionRecord {
        policy().new_session("user", &SessionToken::generate(), now, &ClientInfo::default())
    }

    #[test]
    fn new_session_expires_after_expires_in() {
        let now = Millis(1_000_000);
        let session = session_at(now);
        assert_eq!(session.expires_at, now + 7 * DAY);
    }

    #[test]
    fn new_session_stores_only_the_token_hash() {
        let token = SessionToken::generate();
        let session = policy().new_session("user", &token, Millis(0), &ClientInfo::default());
        assert_eq!(session.token_hash, token.hash().0);
        assert_ne!(session.token_hash, token.expose());
    }

    #[test]
    fn session_is_valid_before_update_age() {
        let start = Millis(0);
        let session = session_at(start);
        assert_eq!(policy().status(&session, start + DAY / 2), SessionStatus::Valid);
    }

    #[test]
    fn session_refresh_is_due_after_update_age() {
        let start = Millis(0);
        let session = session_at(start);
        let now = start + DAY + Duration::from_secs(1);
        assert_eq!(policy().status(&session, now), SessionStatus::RefreshDue { expires_at: now + 7 * DAY });
    }

    #[test]
    fn session_expires_at_its_expiry() {
        let start = Millis(0);
        let session = session_at(start);
        assert_eq!(policy().status(&session, start + 7 * DAY), SessionStatus::Expired);
    }

    #[test]
    fn refresh_never_passes_the_absolute_cap() {
        let start = Millis(0);
        let mut session = session_at(start);
        session.expires_at = start + 28 * DAY;
        let now = start + 27 * DAY;

        assert_eq!(policy().status(&session, now), SessionStatus::RefreshDue { expires_at: start + 30 * DAY });
    }

    #[test]
    fn session_past_its_absolute_lifetime_is_expired() {
        let start = Millis(0);
        let mut session = session_at(start);
        session.expires_at = start + 35 * DAY;
        assert_eq!(policy().status(&session, start + 30 * DAY), SessionStatus::Expired);
    }

    #[test]
    fn freshness_ends_after_fresh_age() {
        let start = Millis(0);
        let session = session_at(start);
        assert!(policy().is_fresh(&session, start + DAY / 2));
        assert!(!policy().is_fresh(&session, start + DAY));
    }
}
