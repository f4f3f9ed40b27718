//! Sign-in by email code: sending a code, and signing in with it, promoting the caller's guest.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, error, warn};

use super::auth::{Auth, Issued, Refresh};
use super::email::Email;
use super::error::CoreError;
use super::otp::{sign_in_identifier, CodeHasher, OtpCode};
use super::random;
use super::rate_limit::{Decision, RateLimiter, Rule};
use super::session::ClientInfo;
use super::token::SessionToken;
use crate::mail::{CodeMessage, Mailer};
use crate::store::{CodeAttempt, CodeSignIn, NewCode, UserRecord};

/// The method named in `user.promoted` events of code sign-ins.
pub const EMAIL_OTP_METHOD: &str = "email-otp";

/// Code rules from `[email_otp]`.
#[derive(Debug, Clone, Copy)]
pub struct CodePolicy {
    pub length: u32,
    pub expires_in: Duration,
    pub max_attempts: u32,
}

/// Sends codes and signs users in with them.
pub struct CodeService {
    auth: Arc<Auth>,
    hasher: CodeHasher,
    mailer: Box<dyn Mailer>,
    limiter: Option<Arc<RateLimiter>>,
    policy: CodePolicy,
    /// Codes burned by too many wrong tries since start.
    burned: AtomicU64,
}

impl CodeService {
    pub fn new(
        auth: Arc<Auth>,
        hasher: CodeHasher,
        mailer: Box<dyn Mailer>,
        limiter: Option<Arc<RateLimiter>>,
        policy: CodePolicy,
    ) -> Self {
        Self { auth, hasher, mailer, limiter, policy, burned: AtomicU64::new(0) }
    }

    /// Codes burned since start.
    pub fn burned_codes(&self) -> u64 {
        self.burned.load(Ordering::Relaxed)
    }

    /// Issues a code for `email` and mails it. The work and the answer are the same whether or not
    /// the email has an account, because no account is looked up.
    ///
    /// A resend within the validity replaces the code but keeps the try count and the expiry; a
    /// burned code stays burned and no message is sent.
    ///
    /// # Errors
    /// `RateLimited` once `code_send` sends for the email were done in the window, `EmailDeliveryFailed`, or a store failure.
    pub async fn send_code(&self, email: &Email) -> Result<(), CoreError> {
        // A send counts once it is done, so a delivery failure ("retry shortly") does not use up
        // the budget; concurrent sends may pass the limit by the number in flight.
        if let Some(limiter) = &self.limiter {
            if let Some(Decision::Limited { limit, retry_after }) = limiter.peek(Rule::CodeSend, email.as_str()).await? {
                return Err(CoreError::RateLimited { limit, retry_after });
            }
        }

        let now = self.auth.now();
        let identifier = sign_in_identifier(email);
        let code = OtpCode::generate(self.policy.length);
        let new_code = NewCode {
            id: random::new_id(),
            value_hash: self.hasher.hash(&identifier, code.expose()),
            identifier,
            created_at: now,
            expires_at: now + self.policy.expires_in,
        };
        let issued = self.auth.store().issue_code(new_code, self.policy.max_attempts).await?;
        if issued.burned {
            self.count_send(email).await?;
            debug!(verification_id = %issued.verification_id, "code is burned; no message sent");
            return Ok(());
        }

        let message = CodeMessage { to: email, code: &code, valid_minutes: self.policy.expires_in.as_secs().div_ceil(60) };
        if let Err(failure) = self.mailer.send_code(message).await {
            error!(verification_id = %issued.verification_id, error = %failure, "sending a sign-in code failed");
            return Err(CoreError::EmailDeliveryFailed);
        }
        self.count_send(email).await?;
        debug!(verification_id = %issued.verification_id, "sign-in code sent");
        Ok(())
    }

    async fn count_send(&self, email: &Email) -> Result<(), CoreError> {
        if let Some(limiter) = &self.limiter {
            limiter.hit(Rule::CodeSend, email.as_str()).await?;
        }
        Ok(())
    }

    /// Checks the code and signs the email's user in, creating the user on first sign-in. When the
    /// request carries a guest session, the guest is promoted in the same transaction.
    ///
    /// # Errors
    /// `RateLimited` once the client address has `code_fail` failures, `InvalidOtp`, `OtpExpired`,
    /// `TooManyAttempts`, or a store failure.
    pub async fn sign_in(
        &self,
        email: &Email,
        candidate: &str,
        presented: Option<&SessionToken>,
        client: &ClientInfo,
        client_key: &str,
    ) -> Result<Issued, CoreError> {
        if let Some(limiter) = &self.limiter {
            if let Some(Decision::Limited { limit, retry_after }) = limiter.peek(Rule::CodeFail, client_key).await? {
                return Err(CoreError::RateLimited { limit, retry_after });
            }
        }

        let identifier = sign_in_identifier(email);
        let now = self.auth.now();
        let verification_id = match self.auth.store().reserve_code_attempt(&identifier, self.policy.max_attempts, now).await? {
            CodeAttempt::Missing => return Err(self.failed(client_key, CoreError::InvalidOtp).await),
            CodeAttempt::Expired => return Err(self.failed(client_key, CoreError::OtpExpired).await),
            CodeAttempt::Burned { .. } => return Err(self.failed(client_key, CoreError::TooManyAttempts).await),
            CodeAttempt::Reserved { verification_id, value_hash, attempts } => {
                if !self.hasher.matches(&identifier, candidate, &value_hash) {
                    if attempts >= self.policy.max_attempts {
                        self.burned.fetch_add(1, Ordering::Relaxed);
                        warn!(%verification_id, burned_total = self.burned_codes(), "code burned after too many wrong tries");
                    }
                    return Err(self.failed(client_key, CoreError::InvalidOtp).await);
                }
                verification_id
            }
        };

        let guest_id = match presented {
            Some(token) => self.auth.authenticate(token, Refresh::Never).await?.filter(|current| current.user.is_anonymous).map(|current| current.user.id),
            None => None,
        };
        let token = SessionToken::generate();
        let user_id = random::new_id();
        let plan = CodeSignIn {
            verification_id,
            new_user: UserRecord {
                id: user_id.clone(),
                email: email.as_str().to_string(),
                email_verified: true,
                name: String::new(),
                image: None,
                is_anonymous: false,
                created_at: now,
                updated_at: now,
            },
            session: self.auth.policy().new_session(&user_id, &token, now, client),
            guest_id,
            method: EMAIL_OTP_METHOD,
        };

        let signed_in = self.auth.store().sign_in_with_code(plan).await?.ok_or(CoreError::InvalidOtp)?;
        debug!(user_id = %signed_in.user.id, session_id = %signed_in.session.id, promoted = signed_in.promoted, "signed in with a code");
        Ok(Issued { session: signed_in.session, user: signed_in.user, token })
    }

    /// Counts a failed code for the client address and passes the error on.
    async fn failed(&self, client_key: &str, error: CoreError) -> CoreError {
        if let Some(limiter) = &self.limiter {
            if let Err(unavailable) = limiter.hit(Rule::CodeFail, client_key).await {
                return unavailable;
            }
        }
        error
    }

}
