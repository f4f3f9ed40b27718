//! Bot-check providers: Cloudflare Turnstile and hCaptcha through their siteverify APIs, and the
//! built-in ALTCHA proof of work.

pub mod altcha;

use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use rand::rngs::OsRng;
use rand::RngCore;
use serde::Deserialize;
use sha2::Digest;

use crate::config::{CaptchaConfig, CaptchaProvider};
use crate::core::secret::Secret;

/// Maximum time one verification may take, retry included.
pub const VERIFY_BUDGET: Duration = Duration::from_secs(10);
/// Longest accepted token, in bytes; Turnstile tokens have at most 2048 characters.
pub const MAX_TOKEN_BYTES: usize = 2048;

const TURNSTILE_URL: &str = "https://challenges.cloudflare.com/turnstile/v0/siteverify";
const HCAPTCHA_URL: &str = "https://api.hcaptcha.com/siteverify";

/// A provider's verdict on a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Passed,
    /// The token is invalid, spent, or for another action or hostname.
    Rejected(String),
    /// The provider could not decide: timeout, outage, or Doorman's own misconfiguration.
    Unavailable(String),
}

/// Verifies bot-check tokens with a provider.
pub trait CaptchaVerifier: Send + Sync {
    /// The value claimed so a token passes once: the SHA-256 of the token by default.
    ///
    /// # Errors
    /// A reason, for a token that is malformed before any provider work.
    fn claim_id(&self, token: &str) -> Result<String, String> {
        Ok(sha2::Sha256::digest(token.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect())
    }

    fn verify<'a>(&'a self, token: &'a str, remote_ip: Option<&'a str>) -> BoxFuture<'a, Verdict>;
}

/// Builds the configured siteverify verifier; `None` for providers `none` and `altcha`, whose
/// verifier the application builds with its secret.
///
/// # Errors
/// A missing secret, an invalid URL, or a provider that is not built yet.
pub fn from_config(config: &CaptchaConfig) -> anyhow::Result<Option<Box<dyn CaptchaVerifier>>> {
    let (kind, default_url) = match config.provider {
        CaptchaProvider::None | CaptchaProvider::Altcha => return Ok(None),
        CaptchaProvider::Turnstile => (Kind::Turnstile, TURNSTILE_URL),
        CaptchaProvider::Hcaptcha => (Kind::Hcaptcha, HCAPTCHA_URL),
    };
    let secret = config.secret.clone().ok_or_else(|| anyhow::anyhow!("captcha.secret is required for this provider"))?;
    let url = config.verify_url.clone().unwrap_or_else(|| default_url.to_string());
    url::Url::parse(&url).map_err(|error| anyhow::anyhow!("captcha.verify_url is not a URL: {error}"))?;
    let client = reqwest::Client::builder().timeout(VERIFY_BUDGET).build()?;
    Ok(Some(Box::new(Siteverify {
        kind,
        client,
        url,
        secret,
        expected_action: config.expected_action.clone(),
        allowed_hostnames: config.allowed_hostnames.clone(),
    })))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// JSON body, with an idempotency key reused for one retry.
    Turnstile,
    /// Form body only.
    Hcaptcha,
}

/// A siteverify API: POST the secret and the token, read `success`.
struct Siteverify {
    kind: Kind,
    client: reqwest::Client,
    url: String,
    secret: Secret,
    expected_action: Option<String>,
    allowed_hostnames: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct SiteverifyResponse {
    success: bool,
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default, rename = "error-codes")]
    error_codes: Vec<String>,
}

/// Error codes that mean Doorman, not the visitor, is at fault, or the provider failed.
const OPERATOR_ERRORS: &[&str] = &["missing-input-secret", "invalid-input-secret", "internal-error"];

impl CaptchaVerifier for Siteverify {
    fn verify<'a>(&'a self, token: &'a str, remote_ip: Option<&'a str>) -> BoxFuture<'a, Verdict> {
        Box::pin(async move {
            let started = Instant::now();
            let idempotency_key = uuid_v4();
            let mut retried = false;
            loop {
                let remaining = VERIFY_BUDGET.saturating_sub(started.elapsed());
                match tokio::time::timeout(remaining, self.send(token, remote_ip, &idempotency_key)).await {
                    Err(_) => return Verdict::Unavailable("the provider did not answer in time".into()),
                    Ok(Ok(response)) => return self.judge(response),
                    // A connection error or a 5xx is retried once with the same idempotency key.
                    Ok(Err(reason)) if !retried && started.elapsed() < VERIFY_BUDGET => {
                        tracing::warn!(reason = %reason, "bot-check provider failed; retrying once");
                        retried = true;
                    }
                    Ok(Err(reason)) => return Verdict::Unavailable(reason),
                }
            }
        })
    }
}

impl Siteverify {
    async fn send(&self, token: &str, remote_ip: Option<&str>, idempotency_key: &str) -> Result<SiteverifyResponse, String> {
        let mut fields = vec![("secret", self.secret.expose()), ("response", token)];
        if let Some(ip) = remote_ip {
            fields.push(("remoteip", ip));
        }
        let request = match self.kind {
            Kind::Turnstile => {
                fields.push(("idempotency_key", idempotency_key));
                let body: serde_json::Map<String, serde_json::Value> =
                    fields.iter().map(|(key, value)| (key.to_string(), serde_json::Value::from(*value))).collect();
                self.client.post(&self.url).json(&body)
            }
            Kind::Hcaptcha => self.client.post(&self.url).form(&fields),
        };
        let response = request.send().await.map_err(|error| format!("request failed: {}", error.without_url()))?;
        if response.status().is_server_error() {
            return Err(format!("provider answered {}", response.status()));
        }
        response.json().await.map_err(|error| format!("unreadable answer: {}", error.without_url()))
    }

    fn judge(&self, response: SiteverifyResponse) -> Verdict {
        if !response.success {
            if let Some(code) = response.error_codes.iter().find(|code| OPERATOR_ERRORS.contains(&code.as_str())) {
                return Verdict::Unavailable(format!("the provider reported {code}"));
            }
            return Verdict::Rejected(response.error_codes.join(","));
        }
        if let Some(expected) = &self.expected_action {
            if response.action.as_deref() != Some(expected.as_str()) {
                return Verdict::Rejected("wrong action".into());
            }
        }
        if !self.allowed_hostnames.is_empty() {
            let hostname = response.hostname.unwrap_or_default();
            if !self.allowed_hostnames.iter().any(|allowed| allowed.eq_ignore_ascii_case(&hostname)) {
                return Verdict::Rejected("wrong hostname".into());
            }
        }
        Verdict::Passed
    }
}

/// A random version 4 UUID from the OS random generator.
fn uuid_v4() -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_version_4() {
        let uuid = uuid_v4();
        assert_eq!(uuid.len(), 36);
        assert_eq!(&uuid[14..15], "4");
        assert!(matches!(&uuid[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(uuid_v4(), uuid);
    }
}
