//! The bot check in front of guest creation and code sending: one claim per token, then the
//! provider's verdict.

use std::time::Duration;

use tracing::{debug, error};

use super::error::CoreError;
use super::time::{Clock, Millis};
use crate::redis_store::RedisStore;
use crate::captcha::{CaptchaVerifier, Verdict, MAX_TOKEN_BYTES};
use crate::store::Store;

/// How long a claim lasts: longer than any provider keeps a token valid (Turnstile: 300 s), and
/// than the longest `captcha.challenge_ttl` the configuration allows (10 minutes).
const CLAIM_LIFETIME: Duration = Duration::from_secs(600);

/// The store of claimed tokens: the database, or Redis with the Redis rate-limit backend.
pub enum TokenClaims {
    Database(Store),
    Redis(RedisStore),
}

impl TokenClaims {
    async fn claim(&self, hash: &str, now: Millis) -> anyhow::Result<bool> {
        match self {
            TokenClaims::Database(store) => Ok(store.claim_token(hash, now + CLAIM_LIFETIME, now).await?),
            TokenClaims::Redis(redis) => redis.claim(hash, CLAIM_LIFETIME).await,
        }
    }

    async fn release(&self, hash: &str) -> anyhow::Result<()> {
        match self {
            TokenClaims::Database(store) => Ok(store.release_token(hash).await?),
            TokenClaims::Redis(redis) => redis.release(hash).await,
        }
    }
}

/// Checks bot-check tokens on the configured endpoints.
pub struct BotCheck {
    verifier: Box<dyn CaptchaVerifier>,
    claims: TokenClaims,
    clock: Clock,
    /// Paths under the base path that require a token.
    endpoints: Vec<String>,
}

impl BotCheck {
    pub fn new(verifier: Box<dyn CaptchaVerifier>, claims: TokenClaims, clock: Clock, endpoints: Vec<String>) -> Self {
        Self { verifier, claims, clock, endpoints }
    }

    /// True when `path` (under the base path) requires a token.
    pub fn guards(&self, path: &str) -> bool {
        self.endpoints.iter().any(|endpoint| endpoint == path)
    }

    /// Claims the token's hash, then asks the provider. A token passes at most once, on any
    /// instance, because the claim comes first; the claim is released only when the provider
    /// could not be asked, so the visitor may retry with the same token.
    ///
    /// # Errors
    /// `MissingCaptchaResponse`, `CaptchaVerificationFailed` (claimed before, or rejected), or
    /// `CaptchaUnavailable` (provider timeout or error, misconfiguration, store unreachable).
    pub async fn check(&self, token: Option<&str>, remote_ip: Option<&str>) -> Result<(), CoreError> {
        let token = token.map(str::trim).filter(|token| !token.is_empty()).ok_or(CoreError::MissingCaptchaResponse)?;
        if token.len() > MAX_TOKEN_BYTES {
            return Err(CoreError::CaptchaVerificationFailed);
        }

        let hash = match self.verifier.claim_id(token) {
            Ok(hash) => hash,
            Err(reason) => {
                debug!(%reason, "bot-check token is malformed");
                return Err(CoreError::CaptchaVerificationFailed);
            }
        };
        let now = self.clock.now();
        let claimed = self.claims.claim(&hash, now).await.map_err(|error| {
            error!(error = format!("{error:#}"), "claiming a bot-check token failed");
            CoreError::CaptchaUnavailable
        })?;
        if !claimed {
            debug!("bot-check token was used before");
            return Err(CoreError::CaptchaVerificationFailed);
        }

        match self.verifier.verify(token, remote_ip).await {
            Verdict::Passed => Ok(()),
            Verdict::Rejected(reason) => {
                debug!(%reason, "bot-check token rejected");
                Err(CoreError::CaptchaVerificationFailed)
            }
            Verdict::Unavailable(reason) => {
                error!(%reason, "bot check unavailable");
                if let Err(error) = self.claims.release(&hash).await {
                    error!(error = format!("{error:#}"), "releasing a bot-check token failed");
                }
                Err(CoreError::CaptchaUnavailable)
            }
        }
    }
}
