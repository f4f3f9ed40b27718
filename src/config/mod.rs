//! Doorman's configuration: a TOML file, `DOORMAN_` environment variables and `_FILE` secrets.
//!
//! Every key is accepted from the first version on, including keys of features that a deployment
//! does not use, so one file serves every version.

mod check;
mod load;
mod units;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub use load::{load, redacted_toml, LoadOptions, Loaded};
pub use units::{ByteSize, Duration};

use crate::core::secret::Secret;

/// The whole configuration, one field per TOML section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Signs and encrypts; at least 32 bytes. Required outside development mode.
    pub secret: Option<Secret>,
    /// Older secrets, which still verify and decrypt but never sign, so a rotation signs nobody out.
    pub secrets: Vec<Secret>,
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub session: SessionConfig,
    pub anonymous: AnonymousConfig,
    pub email_otp: EmailOtpConfig,
    pub mail: MailConfig,
    pub captcha: CaptchaConfig,
    pub rate_limit: RateLimitConfig,
    pub jwt: JwtConfig,
    pub sync: SyncConfig,
    /// True when the server runs in development mode (`serve --dev`, or no configuration at all).
    #[serde(skip)]
    pub dev_mode: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            secret: None,
            secrets: Vec::new(),
            server: ServerConfig::default(),
            database: DatabaseConfig::default(),
            session: SessionConfig::default(),
            anonymous: AnonymousConfig::default(),
            email_otp: EmailOtpConfig::default(),
            mail: MailConfig::default(),
            captcha: CaptchaConfig::default(),
            rate_limit: RateLimitConfig::default(),
            jwt: JwtConfig::default(),
            sync: SyncConfig::default(),
            dev_mode: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Public URL of the server; its origin is trusted, and `https` turns on secure cookies.
    /// Defaults to `http://<listen>`.
    pub base_url: Option<String>,
    /// Prefix of the auth routes; starts with `/` and has no trailing `/`.
    pub base_path: String,
    /// Further trusted origins: exact origins, custom schemes, or `*.` subdomain patterns.
    pub trusted_origins: Vec<String>,
    /// Peers whose `X-Forwarded-For` (or `trusted_proxy_header`) names the client.
    pub trusted_proxies: Vec<IpNet>,
    /// A single-address header set by a trusted proxy, such as `cf-connecting-ip`.
    pub trusted_proxy_header: Option<String>,
    /// Maximum time from a request's arrival to its response.
    pub request_timeout: Duration,
    /// Maximum time a client may take to send its request headers.
    pub header_read_timeout: Duration,
    /// Maximum connections open at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// Maximum time a shutdown waits for requests in flight.
    pub shutdown_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
            base_url: None,
            base_path: "/api/auth".into(),
            trusted_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            trusted_proxy_header: None,
            request_timeout: Duration::seconds(30),
            header_read_timeout: Duration::seconds(10),
            max_connections: 1024,
            shutdown_timeout: Duration::seconds(30),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DatabaseConfig {
    /// `sqlite://path` (created when missing) or `postgres://…`.
    pub url: String,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    pub statement_timeout: Duration,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://doorman.db".into(),
            max_connections: 10,
            acquire_timeout: Duration::seconds(3),
            statement_timeout: Duration::seconds(10),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SessionConfig {
    /// Lifetime of a session from its last refresh.
    pub expires_in: Duration,
    /// Age of the last refresh after which a read extends the session.
    pub update_age: Duration,
    /// Age below which a session counts as fresh, as `list-sessions` and `delete-user` require.
    pub fresh_age: Duration,
    /// Absolute lifetime from creation; no refresh extends a session past it.
    pub max_age: Duration,
    /// Cookie names are `<prefix>.session_token` and so on.
    pub cookie_prefix: String,
    /// Adds `set-auth-token` to responses that set the session cookie, and reads `Authorization: Bearer`.
    pub bearer: bool,
    /// Refuses raw, unsigned bearer tokens.
    pub bearer_require_signature: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            expires_in: Duration::days(7),
            update_age: Duration::days(1),
            fresh_age: Duration::days(1),
            max_age: Duration::days(30),
            cookie_prefix: "doorman".into(),
            bearer: true,
            bearer_require_signature: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AnonymousConfig {
    /// Allows `sign-in/anonymous`; off outside development mode unless set.
    pub enabled: bool,
    /// Age after which a guest without a live session is deleted.
    pub prune_after: Duration,
}

impl Default for AnonymousConfig {
    fn default() -> Self {
        Self { enabled: false, prune_after: Duration::days(30) }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct EmailOtpConfig {
    /// Digits per code, 6 to 10.
    pub length: u32,
    pub expires_in: Duration,
    /// Wrong tries after which a code is burned.
    pub max_attempts: u32,
}

impl Default for EmailOtpConfig {
    fn default() -> Self {
        Self { length: 8, expires_in: Duration::minutes(10), max_attempts: 3 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailTransport {
    Smtp,
    /// Prints each message to standard output, for development.
    Console,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct MailConfig {
    pub transport: MailTransport,
    /// `smtp://user:password@host:port` (STARTTLS when offered) or `smtps://…` (implicit TLS).
    pub smtp_url: Option<String>,
    pub from: Option<String>,
    pub subject: String,
}

impl Default for MailConfig {
    fn default() -> Self {
        Self {
            transport: MailTransport::Smtp,
            smtp_url: None,
            from: None,
            subject: "Your sign-in code".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptchaProvider {
    None,
    Turnstile,
    Hcaptcha,
    Altcha,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct CaptchaConfig {
    pub provider: CaptchaProvider,
    pub secret: Option<Secret>,
    /// The provider's siteverify URL, for proxies and tests.
    pub verify_url: Option<String>,
    /// Paths under the base path that require a bot check.
    pub endpoints: Vec<String>,
    pub expected_action: Option<String>,
    pub allowed_hostnames: Vec<String>,
    /// Proof-of-work cost of the built-in challenge.
    pub altcha_cost: u32,
    pub challenge_ttl: Duration,
    /// Allows provider `none` with guests on and an https `base_url`.
    pub allow_none: bool,
}

impl Default for CaptchaConfig {
    fn default() -> Self {
        Self {
            provider: CaptchaProvider::None,
            secret: None,
            verify_url: None,
            endpoints: vec!["/sign-in/anonymous".into(), "/email-otp/send-verification-otp".into()],
            expected_action: None,
            allowed_hostnames: Vec::new(),
            altcha_cost: 5_000,
            challenge_ttl: Duration::minutes(5),
            allow_none: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateLimitBackend {
    Memory,
    Redis,
}

/// One rate-limit rule: at most `max` requests per `window`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RateRule {
    pub max: u32,
    pub window: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RateLimitConfig {
    pub enabled: bool,
    pub backend: RateLimitBackend,
    pub redis_url: Option<String>,
    /// Prefix of every Redis key, so several deployments can share one Redis.
    pub redis_prefix: String,
    /// Overrides by rule name: `session_read`, `sign_in`, `guest_create`, `code_send`, `code_fail`.
    pub rules: BTreeMap<String, RateRule>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            backend: RateLimitBackend::Memory,
            redis_url: None,
            redis_prefix: "doorman".into(),
            rules: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct JwtConfig {
    /// Adds `set-auth-jwt` to `get-session` responses.
    pub session_header: bool,
    pub expires_in: Duration,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self { session_header: false, expires_in: Duration::minutes(15) }
    }
}

/// Columns a client may write in one synced table.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncTable {
    pub columns: Vec<String>,
    pub allow_delete: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncConfig {
    /// The PowerSync service URL; without it the sync routes answer 404.
    pub powersync_url: Option<String>,
    pub base_path: String,
    /// The PostgreSQL database PowerSync replicates; without it upload answers 404.
    pub database_url: Option<String>,
    pub schema: String,
    pub owner_column: String,
    pub tables: BTreeMap<String, SyncTable>,
    pub token_ttl: Duration,
    pub audience: String,
    pub alg: String,
    pub hs256_secret: Option<Secret>,
    pub hs256_kid: Option<String>,
    pub max_devices: u32,
    pub max_body: ByteSize,
    pub max_operations: u32,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            powersync_url: None,
            base_path: "/powersync".into(),
            database_url: None,
            schema: "public".into(),
            owner_column: "user_id".into(),
            tables: BTreeMap::new(),
            token_ttl: Duration::hours(1),
            audience: "powersync".into(),
            alg: "EdDSA".into(),
            hs256_secret: None,
            hs256_kid: None,
            max_devices: 50,
            max_body: ByteSize(4 << 20),
            max_operations: 1000,
        }
    }
}

impl Config {
    /// The public base URL: `server.base_url`, else `http://<listen>`.
    pub fn base_url(&self) -> String {
        match &self.server.base_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("http://{}", self.server.listen),
        }
    }
}

/// Decodes base64url with or without padding.
///
/// # Errors
/// Text that is not base64url.
pub fn decode_base64url(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
    use base64::Engine;
    URL_SAFE_NO_PAD.decode(text.trim()).or_else(|_| URL_SAFE.decode(text.trim()))
}
