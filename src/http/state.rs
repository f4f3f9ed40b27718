//! State shared by every handler.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use super::client_ip::ClientIpResolver;
use super::cookies::CookieSettings;
use super::origin::TrustedOrigins;
use crate::config::Config;
use crate::core::auth::Auth;
use crate::captcha::altcha::Altcha;
use crate::core::bot_check::BotCheck;
use crate::core::codes::CodeService;
use crate::core::jwt::TokenIssuer;
use crate::core::sync::SyncGateway;
use crate::core::upload::Uploader;
use crate::core::rate_limit::RateLimiter;
use crate::core::token::TokenSigner;
use crate::store::Store;

/// Shared, read-only state of the HTTP layer; cloning is cheap.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The state of the sync gateway's routes.
pub struct SyncRoutes {
    pub gateway: SyncGateway,
    pub powersync_url: String,
    /// The upload route; `None` without `sync.database_url`, so the route returns 404.
    pub uploads: Option<UploadRoute>,
}

/// The upload route's state and limits.
pub struct UploadRoute {
    pub uploader: Arc<Uploader>,
    /// `sync.max_body`, in bytes.
    pub max_body: usize,
    /// `sync.max_operations`.
    pub max_operations: u32,
}

pub struct Shared {
    pub auth: Arc<Auth>,
    pub codes: Arc<CodeService>,
    pub tokens: Arc<TokenIssuer>,
    /// The bot check; `None` with `captcha.provider = "none"`.
    pub bot_check: Option<BotCheck>,
    /// The built-in proof of work, which also serves challenges; `None` for other providers.
    pub altcha: Option<Arc<Altcha>>,
    /// The sync gateway; `None` without `sync.powersync_url`, so its routes answer 404.
    pub sync: Option<SyncRoutes>,
    pub store: Store,
    pub signer: TokenSigner,
    pub cookies: CookieSettings,
    pub origins: TrustedOrigins,
    pub client_ip: ClientIpResolver,
    /// `session.bearer`: read `Authorization: Bearer` and send `set-auth-token`.
    pub bearer: bool,
    /// `session.bearer_require_signature`: refuse raw bearer tokens.
    pub bearer_require_signature: bool,
    pub request_timeout: Duration,
    /// The route limits; `None` when `rate_limit.enabled = false`.
    pub limiter: Option<Arc<RateLimiter>>,
    pub base_path: String,
}

impl AppState {
    /// # Errors
    /// A configuration value the HTTP layer cannot use (a trusted origin, a proxy header name).
    pub fn new(
        config: &Config,
        auth: Arc<Auth>,
        codes: Arc<CodeService>,
        tokens: Arc<TokenIssuer>,
        sync: Option<SyncRoutes>,
        bot_check: Option<BotCheck>,
        altcha: Option<Arc<Altcha>>,
        limiter: Option<Arc<RateLimiter>>,
        store: Store,
    ) -> anyhow::Result<Self> {
        let secret = config.secret.as_ref().ok_or_else(|| anyhow::anyhow!("`secret` is missing"))?;
        let base_url = config.base_url();
        let origins = TrustedOrigins::new(&base_url, &config.server.trusted_origins)
            .map_err(|reason| anyhow::anyhow!("server.trusted_origins: {reason}"))?;
        let client_ip = ClientIpResolver::new(
            config.server.trusted_proxies.clone(),
            config.server.trusted_proxy_header.as_deref(),
        )
        .map_err(|reason| anyhow::anyhow!("server.trusted_proxy_header: {reason}"))?;

        Ok(Self(Arc::new(Shared {
            auth,
            codes,
            tokens,
            sync,
            bot_check,
            altcha,
            store,
            signer: TokenSigner::new(secret, &config.secrets),
            cookies: CookieSettings::new(&config.session.cookie_prefix, base_url.starts_with("https://")),
            origins,
            client_ip,
            bearer: config.session.bearer,
            bearer_require_signature: config.session.bearer_require_signature,
            request_timeout: config.server.request_timeout.get(),
            limiter,
            base_path: config.server.base_path.clone(),
        })))
    }
}

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}
