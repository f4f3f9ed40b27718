//! JWTs: general-purpose tokens for `/token`, sync tokens for the sync gateway, and the two key
//! rings that sign them.

use std::sync::RwLock;
use std::time::Duration;

use serde_json::{json, Value};
use tracing::{info, warn};

use super::auth::Current;
use super::error::CoreError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::keys::{KeyCipher, KeyRing, Purpose, SigningKey, ED25519};
use super::random;
use super::time::{Clock, Millis};
use crate::store::Store;

/// Issues JWTs with the newest active key of each ring.
pub struct TokenIssuer {
    store: Store,
    clock: Clock,
    cipher: KeyCipher,
    general: RwLock<KeyRing>,
    sync: RwLock<KeyRing>,
    /// Signs sync tokens instead of the sync ring when `sync.alg = "HS256"`.
    sync_hs256: Option<Hs256Key>,
    /// `iss` and `aud` of every token: the origin of `server.base_url`.
    issuer: String,
    ttl: Duration,
}

impl TokenIssuer {
    /// Creates the first key of each ring when it has none (once, even with several instances
    /// starting together), then loads the rings.
    ///
    /// # Errors
    /// A store failure.
    pub async fn start(
        store: Store,
        clock: Clock,
        cipher: KeyCipher,
        issuer: String,
        ttl: Duration,
        sync_alg: &str,
        sync_hs256: Option<Hs256Key>,
    ) -> Result<Self, CoreError> {
        ensure_first_keys(&store, &cipher, clock.now(), sync_alg).await?;
        let issuer = Self {
            store,
            clock,
            cipher,
            general: RwLock::default(),
            sync: RwLock::default(),
            sync_hs256,
            issuer,
            ttl,
        };
        issuer.reload().await?;
        let signing_alg = issuer.sync.read().expect("the key ring lock is never poisoned").signing.as_ref().map(SigningKey::alg);
        if issuer.sync_hs256.is_none() && signing_alg.is_some_and(|alg| alg != sync_alg) {
            warn!(
                configured = sync_alg,
                signing = signing_alg.unwrap_or_default(),
                "the sync ring signs with another algorithm than sync.alg until `doorman keys rotate --purpose sync`"
            );
        }
        Ok(issuer)
    }

    /// Reads both rings from the store again, so keys rotated by any instance or by the CLI take
    /// effect here.
    ///
    /// # Errors
    /// A store failure; the previous rings stay in use.
    pub async fn reload(&self) -> Result<(), CoreError> {
        for (purpose, ring) in [(Purpose::General, &self.general), (Purpose::Sync, &self.sync)] {
            let records = self.store.signing_keys(purpose.name()).await?;
            let loaded = KeyRing::load(&records, &self.cipher, self.clock.now());
            *ring.write().expect("the key ring lock is never poisoned") = loaded;
        }
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

    /// Signs a sync token for `user_id` with the claims `sub`, `user_id`, `aud`, `iat` and `exp`,
    /// and returns it with its expiry.
    ///
    /// # Errors
    /// `NoSigningKey` when no sync key is active and readable.
    pub fn sync_token(&self, user_id: &str, audience: &str, ttl: Duration) -> Result<(String, Millis), CoreError> {
        let now = self.clock.now();
        let issued_at = now.0 / 1000;
        let expires_at = issued_at + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let claims = json!({ "sub": user_id, "user_id": user_id, "aud": audience, "iat": issued_at, "exp": expires_at });
        if let Some(shared) = &self.sync_hs256 {
            return Ok((shared.sign_jwt(&claims), Millis(expires_at * 1000)));
        }
        let ring = self.sync.read().expect("the key ring lock is never poisoned");
        let key = ring.signing.as_ref().ok_or(CoreError::NoSigningKey)?;
        Ok((key.sign_jwt(&claims), Millis(expires_at * 1000)))
    }

    /// The public keys of the sync ring, as a JWKS document.
    pub fn sync_jwks(&self) -> Value {
        let ring = self.sync.read().expect("the key ring lock is never poisoned");
        json!({ "keys": ring.published })
    }
}

/// Adds a key to the `purpose` ring that signs from `now + grace`, and retires the current keys
/// once the last token they can sign has expired (`now + grace + token_lifetime`). The new key is
/// published at once, so verifiers that refresh their JWKS within `grace` know it before it signs.
///
/// # Errors
/// A store failure.
pub async fn rotate(
    store: &Store,
    cipher: &KeyCipher,
    purpose: Purpose,
    alg: &str,
    now: Millis,
    grace: Duration,
    token_lifetime: Duration,
) -> Result<crate::store::KeyRecord, CoreError> {
    let activates_at = now + grace;
    let record = generate(alg, random::new_id()).await?.to_record(purpose, cipher, now, activates_at);
    store.rotate_key(record.clone(), activates_at + token_lifetime).await?;
    info!(kid = %record.kid, purpose = purpose.name(), activates_at = %activates_at.to_wire(), "signing key rotated");
    Ok(record)
}

/// Creates the first key of each ring that has none, once even when several instances or the CLI
/// run it together.
///
/// # Errors
/// A store failure.
pub async fn ensure_first_keys(store: &Store, cipher: &KeyCipher, now: Millis, sync_alg: &str) -> Result<(), CoreError> {
    for purpose in [Purpose::General, Purpose::Sync] {
        let existing = store.signing_keys(purpose.name()).await?;
        if !existing.is_empty() {
            continue;
        }
        let alg = if purpose == Purpose::Sync { sync_alg } else { ED25519 };
        let first = generate(alg, random::new_id()).await?.to_record(purpose, cipher, now, now);
        let kid = first.kid.clone();
        if store.create_first_key(first).await? {
            info!(%kid, purpose = purpose.name(), "first signing key created");
        }
    }
    Ok(())
}

/// Generates a key of `alg` off the async threads (an RSA key takes a while); HS256, whose key is
/// configured rather than generated, and unknown names get Ed25519 so the ring always has a key.
async fn generate(alg: &str, kid: String) -> Result<SigningKey, CoreError> {
    let alg = alg.to_string();
    tokio::task::spawn_blocking(move || SigningKey::generate_with(&alg, kid.clone()).unwrap_or_else(|| SigningKey::generate(kid)))
        .await
        .map_err(|_| CoreError::NoSigningKey)
}

/// The shared key of `sync.alg = "HS256"`, for PowerSync setups with an inline key. It is never
/// published in any JWKS.
pub struct Hs256Key {
    pub key: Zeroizing<Vec<u8>>,
    pub kid: String,
}

impl Hs256Key {
    fn sign_jwt(&self, claims: &Value) -> String {
        let header = json!({ "alg": "HS256", "kid": self.kid, "typ": "JWT" });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC accepts keys of any length");
        mac.update(signing_input.as_bytes());
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    }
}
