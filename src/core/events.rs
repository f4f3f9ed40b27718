//! Events written to the outbox in the same transaction as the change they describe.

use serde_json::json;

use super::random;
use super::time::Millis;

/// One outbox row: an event kind and its JSON payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    pub id: String,
    /// `user.promoted` or `user.deleted`.
    pub kind: &'static str,
    pub payload: String,
    pub created_at: Millis,
}

impl OutboxEvent {
    /// `user.promoted {anonymousUserId, userId, method}`: a guest became a real account.
    pub fn user_promoted(anonymous_user_id: &str, user_id: &str, method: &str, now: Millis) -> Self {
        let payload = json!({ "anonymousUserId": anonymous_user_id, "userId": user_id, "method": method });
        Self::new("user.promoted", payload, now)
    }

    /// `user.deleted {userId}`: a user was deleted by itself, an operator or pruning.
    pub fn user_deleted(user_id: &str, now: Millis) -> Self {
        Self::new("user.deleted", json!({ "userId": user_id }), now)
    }

    fn new(kind: &'static str, payload: serde_json::Value, now: Millis) -> Self {
        Self { id: random::new_id(), kind, payload: payload.to_string(), created_at: now }
    }
}
