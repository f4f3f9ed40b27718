//! General-purpose JWTs for `/token`, and the key ring that signs them.

use std::sync::RwLock;
use std::time::Duration;

use serde_json::{json, Value};
use tracing::info;

use super::auth::Current;
use super::error::CoreError;
use super::keys::{KeyCipher, KeyRing, Purpose, SigningKey};
use super::random;
use super::time::Clock;
use crate::store::Store;

/// Issues `/token` JWTs with the newest active key of the general ring.
pub struct TokenIssuer {
    store: Store,
    clock: Clock,
    cipher: KeyCipher,
    general: RwLock<KeyRing>,
    /// `iss` and `aud` of every token: the origin of `server.base_url`.
    issuer: String,
    ttl: Duration,
}

impl TokenIssuer {
    /// Creates the first general key when there is none (once, even with several instances
    /// starting together), then loads the ring.
    ///
    /// # Errors
    /// A store failure.
    pub async fn start(store: Store, clock: Clock, cipher: KeyCipher, issuer: String, ttl: Duration) -> Result<Self, CoreError> {
        let now = clock.now();
        let first = SigningKey::generate(random::new_id()).to_record(Purpose::General, &cipher, now, now);
        let kid = first.kid.clone();
        if store.create_first_key(first).await? {
            info!(%kid, purpose = "general", "first signing key created");
        }

        let issuer = Self { store, clock, cipher, general: RwLock::default(), issuer, ttl };
        issuer.reload().await?;
        Ok(issuer)
    }

    /// Reads the general ring from the store again, so keys rotated by any instance or by the CLI
    /// take effect here.
    ///
    /// # Errors
    /// A store failure; the previous ring stays in use.
    pub async fn reload(&self) -> Result<(), CoreError> {
        let records = self.store.signing_keys(Purpose::General.name()).await?;
        let ring = KeyRing::load(&records, &self.cipher, self.clock.now());
        *self.general.write().expect("the key ring lock is never poisoned") = ring;
        Ok(())
    }

    /// Signs a JWT for the caller with the claims `sub`, `iat`, `exp`, `iss`, `aud` and
    /// `isAnonymous`, and nothing else.
    ///
    /// # Errors
    /// `NoSigningKey` when no general key is active and readable.
    pub fn general_token(&self, current: &Current) -> Result<String, CoreError> {
        let issued_at = self.clock.now().0 / 1000;
        let claims = json!({
            "sub": current.user.id,
            "iat": issued_at,
            "exp": issued_at + i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX / 2),
            "iss": self.issuer,
            "aud": self.issuer,
            "isAnonymous": current.user.is_anonymous,
        });
        let ring = self.general.read().expect("the key ring lock is never poisoned");
        let key = ring.signing.as_ref().ok_or(CoreError::NoSigningKey)?;
        Ok(key.sign_jwt(&claims))
    }

    /// The public keys of the general ring, as a JWKS document.
    pub fn general_jwks(&self) -> Value {
        let ring = self.general.read().expect("the key ring lock is never poisoned");
        json!({ "keys": ring.published })
    }
}
