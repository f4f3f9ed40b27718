//! The sync gateway's rules: who may get a sync token, and the device registry behind it.

use std::sync::Arc;
use std::time::Duration;

use tracing::debug;

use super::auth::Current;
use super::error::CoreError;
use super::jwt::TokenIssuer;
use super::time::{Clock, Millis};
use crate::store::{DeviceCheck, Store};

/// Longest accepted device id, in characters.
const MAX_DEVICE_ID_CHARS: usize = 128;
/// Longest accepted device name, in characters.
const MAX_DEVICE_NAME_CHARS: usize = 100;
/// Name of a device whose client sent no usable `X-Device-Name`.
pub const UNKNOWN_DEVICE: &str = "Unknown device";

/// A client's `X-Device-ID`: 1 to 128 characters of `[A-Za-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceId(String);

impl DeviceId {
    pub fn parse(text: &str) -> Option<Self> {
        let valid = !text.is_empty()
            && text.len() <= MAX_DEVICE_ID_CHARS
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        valid.then(|| Self(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The device's display name: `X-Device-Name` trimmed, if it has 1 to 100 characters and no
/// control characters, else `Unknown device`.
pub fn device_name(header: Option<&str>) -> String {
    let name = header.unwrap_or_default().trim();
    let count = name.chars().count();
    if (1..=MAX_DEVICE_NAME_CHARS).contains(&count) && !name.chars().any(char::is_control) {
        name.to_string()
    } else {
        UNKNOWN_DEVICE.to_string()
    }
}

/// Sync token settings from `[sync]`.
#[derive(Debug, Clone)]
pub struct SyncPolicy {
    pub audience: String,
    pub token_ttl: Duration,
    pub max_devices: u32,
}

/// Issues sync tokens to real users on registered devices.
pub struct SyncGateway {
    store: Store,
    clock: Clock,
    tokens: Arc<TokenIssuer>,
    policy: SyncPolicy,
}

impl SyncGateway {
    pub fn new(store: Store, clock: Clock, tokens: Arc<TokenIssuer>, policy: SyncPolicy) -> Self {
        Self { store, clock, tokens, policy }
    }

    /// Refuses guests, then registers or checks the device, then signs a token.
    ///
    /// # Errors
    /// `AnonymousSyncForbidden`, `DeviceIdTaken`, `DeviceDisconnected`, `DeviceLimitReached`,
    /// `NoSigningKey`, or a store failure.
    pub async fn issue(&self, current: &Current, device: &DeviceId, name: &str) -> Result<(String, Millis), CoreError> {
        if current.user.is_anonymous {
            return Err(CoreError::AnonymousSyncForbidden);
        }

        let now = self.clock.now();
        match self.store.use_device(&current.user.id, device.as_str(), name, now, self.policy.max_devices).await? {
            DeviceCheck::Registered => debug!(user_id = %current.user.id, "device registered"),
            DeviceCheck::Known => {}
            DeviceCheck::Taken => return Err(CoreError::DeviceIdTaken),
            DeviceCheck::Revoked => return Err(CoreError::DeviceDisconnected),
            DeviceCheck::LimitReached => return Err(CoreError::DeviceLimitReached),
        }

        self.tokens.sync_token(&current.user.id, &self.policy.audience, self.policy.token_ttl)
    }

    /// Checks that an uploading device was registered by the token route, to this user, and is
    /// not revoked. Uploads never register devices.
    ///
    /// # Errors
    /// `AnonymousSyncForbidden`, `DeviceNotRegistered`, `DeviceIdTaken`, `DeviceDisconnected`, or
    /// a store failure.
    pub async fn check_upload_device(&self, current: &Current, device: &DeviceId) -> Result<(), CoreError> {
        if current.user.is_anonymous {
            return Err(CoreError::AnonymousSyncForbidden);
        }
        match self.store.find_device(device.as_str()).await? {
            None => Err(CoreError::DeviceNotRegistered),
            Some(record) if record.user_id != current.user.id => Err(CoreError::DeviceIdTaken),
            Some(record) if record.revoked_at.is_some() => Err(CoreError::DeviceDisconnected),
            Some(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids_follow_their_alphabet_and_length() {
        assert!(DeviceId::parse("laptop_01-A").is_some());
        assert!(DeviceId::parse(&"a".repeat(128)).is_some());
        for text in ["", "has space", "semi;colon", "ü", &"a".repeat(129)] {
            assert!(DeviceId::parse(text).is_none(), "{text:?}");
        }
    }

    #[test]
    fn device_names_fall_back_when_unusable() {
        assert_eq!(device_name(Some("  Ada's phone ")), "Ada's phone");
        assert_eq!(device_name(None), UNKNOWN_DEVICE);
        assert_eq!(device_name(Some("   ")), UNKNOWN_DEVICE);
        assert_eq!(device_name(Some(&"x".repeat(101))), UNKNOWN_DEVICE);
        assert_eq!(device_name(Some("a\u{7}b")), UNKNOWN_DEVICE);
    }
}
