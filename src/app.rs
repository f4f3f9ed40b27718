//! Starting Doorman inside a program: the router and a handle that owns the store and the
//! background tasks.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::config::Config;
use crate::captcha;
use crate::captcha::altcha::Altcha;
use crate::config::CaptchaProvider;
use crate::core::auth::Auth;
use crate::core::bot_check::{BotCheck, TokenClaims};
use crate::core::codes::{CodePolicy, CodeService};
use crate::core::jwt::{Hs256Key, TokenIssuer};
use crate::config::decode_base64url;
use zeroize::Zeroizing;
use crate::core::keys::KeyCipher;
use crate::core::sync::{SyncGateway, SyncPolicy};
use crate::core::upload::Uploader;
use crate::http::state::{SyncRoutes, UploadRoute};
use crate::store::upload::UploadTarget;
use crate::core::otp::CodeHasher;
use crate::core::rate_limit::{Limits, MemoryLimiter, RateLimiter};
use crate::config::RateLimitBackend;
use crate::redis_store::RedisStore;
use crate::mail;
use crate::core::error::CoreError;
use crate::core::session::SessionPolicy;
use crate::core::time::Clock;
use crate::http::{self, AppState};
use crate::store::{Store, SweepCounts};

/// Time between two sweeps of expired sessions and verifications.
const SWEEP_INTERVAL: Duration = Duration::from_secs(300);

/// Entry point for embedding Doorman.
pub struct Doorman;

impl Doorman {
    /// Opens and migrates the store, starts the background tasks and builds the router.
    ///
    /// # Errors
    /// A store that cannot be opened or migrated, or a configuration the HTTP layer cannot use.
    pub async fn start(config: Config) -> anyhow::Result<(Router, Handle)> {
        Self::start_with_clock(config, Clock::system()).await
    }

    /// [`Doorman::start`] with a given clock, so tests can move time.
    ///
    /// # Errors
    /// As [`Doorman::start`].
    pub async fn start_with_clock(config: Config, clock: Clock) -> anyhow::Result<(Router, Handle)> {
        let store = Store::open(&config.database).await.context("opening the store")?;
        store.migrate().await?;

        let policy = SessionPolicy::from_config(&config.session);
        let auth = Arc::new(Auth::new(store.clone(), clock.clone(), policy, config.anonymous.enabled));
        let redis = redis(&config).await?;
        let limiter = limiter(&config, clock.clone(), redis.as_ref())?;
        let codes = Arc::new(code_service(&config, auth.clone(), limiter.clone())?);
        let tokens = Arc::new(token_issuer(&config, store.clone(), clock.clone()).await?);
        let sync = sync_routes(&config, &store, &clock, &tokens).await?;
        let uploader = sync.as_ref().and_then(|routes| routes.uploads.as_ref()).map(|route| route.uploader.clone());
        let claims = match redis {
            Some(redis) => TokenClaims::Redis(redis),
            None => TokenClaims::Database(store.clone()),
        };
        let altcha = (config.captcha.provider == CaptchaProvider::Altcha).then(|| {
            let secret = config.secret.as_ref().expect("the configuration check requires a secret");
            Arc::new(Altcha::new(secret, config.captcha.altcha_cost, config.captcha.challenge_ttl.get(), clock.clone()))
        });
        let verifier = match &altcha {
            Some(altcha) => Some(Box::new(altcha.clone()) as Box<dyn captcha::CaptchaVerifier>),
            None => captcha::from_config(&config.captcha)?,
        };
        let bot_check = verifier.map(|verifier| BotCheck::new(verifier, claims, clock.clone(), config.captcha.endpoints.clone()));
        let state = AppState::new(&config, auth.clone(), codes, tokens.clone(), sync, bot_check, altcha, limiter, store.clone())?;
        let router = http::router(state, &config.server.base_path, &config.sync.base_path);

        let (stop, stopped) = watch::channel(false);
        let sweeper = {
            let auth = auth.clone();
            tokio::spawn(every(SWEEP_INTERVAL, stopped.clone(), move || {
                let auth = auth.clone();
                async move { sweep(&auth).await }
            }))
        };
        let reloader = {
            let tokens = tokens.clone();
            tokio::spawn(every(KEY_RELOAD_INTERVAL, stopped.clone(), move || {
                let tokens = tokens.clone();
                async move { reload_keys(&tokens).await }
            }))
        };
        let mut tasks = vec![sweeper, reloader];
        if let Some(uploader) = uploader.clone() {
            tasks.push(tokio::spawn(every(CATALOG_CHECK_INTERVAL, stopped, move || {
                let uploader = uploader.clone();
                async move { uploader.target().check_catalog().await }
            })));
        }

        Ok((router, Handle { store, auth, tokens, uploader, stop, tasks }))
    }
}

/// Builds the sync gateway when `sync.powersync_url` is set, and its upload route when
/// `sync.database_url` is set too.
async fn sync_routes(config: &Config, store: &Store, clock: &Clock, tokens: &Arc<TokenIssuer>) -> anyhow::Result<Option<SyncRoutes>> {
    let Some(powersync_url) = config.sync.powersync_url.clone() else { return Ok(None) };
    let policy = SyncPolicy {
        audience: config.sync.audience.clone(),
        token_ttl: config.sync.token_ttl.get(),
        max_devices: config.sync.max_devices,
    };
    let gateway = SyncGateway::new(store.clone(), clock.clone(), tokens.clone(), policy);
    let uploads = match config.sync.database_url {
        Some(_) => Some(upload_route(config, clock).await?),
        None => None,
    };
    Ok(Some(SyncRoutes { gateway, powersync_url, uploads }))
}

/// Opens the synced database and checks its tables against `sync.tables`. A database that cannot
/// be reached does not stop the start, because uploads return 503 until it can.
async fn upload_route(config: &Config, clock: &Clock) -> anyhow::Result<UploadRoute> {
    let target = UploadTarget::open(&config.sync, &config.database)?;
    match target.prepare().await {
        Ok(()) => info!(schema = %config.sync.schema, tables = config.sync.tables.len(), "synced database ready for uploads"),
        Err(error) if error.is_unreachable() => warn!(error = %error, "uploads return 503 until the synced database can be reached"),
        Err(error) => return Err(anyhow::Error::new(error).context("preparing the synced database (sync.database_url)")),
    }
    Ok(UploadRoute {
        uploader: Arc::new(Uploader::new(target, config.sync.tables.clone(), clock.clone())),
        max_body: usize::try_from(config.sync.max_body.0).unwrap_or(usize::MAX),
        max_operations: config.sync.max_operations,
    })
}

/// Time between two reloads of the signing keys, so a rotation reaches every instance.
const KEY_RELOAD_INTERVAL: Duration = Duration::from_secs(60);
/// Time between two checks of the synced tables, so a table that stopped fitting `sync.tables` is
/// logged even while no client uploads.
const CATALOG_CHECK_INTERVAL: Duration = Duration::from_secs(60);

async fn token_issuer(config: &Config, store: Store, clock: Clock) -> anyhow::Result<TokenIssuer> {
    let secret = config.secret.as_ref().context("`secret` is missing")?;
    let cipher = KeyCipher::new(secret, &config.secrets);
    let origin = url::Url::parse(&config.base_url()).context("server.base_url")?.origin().ascii_serialization();
    let hs256 = match (config.sync.alg.as_str(), &config.sync.hs256_secret) {
        ("HS256", Some(shared)) => Some(Hs256Key {
            key: Zeroizing::new(decode_base64url(shared.expose()).context("sync.hs256_secret is not base64url")?),
            kid: config.sync.hs256_kid.clone().unwrap_or_default(),
        }),
        _ => None,
    };
    TokenIssuer::start(store, clock, cipher, origin, config.jwt.expires_in.get(), &config.sync.alg, hs256)
        .await
        .context("loading the signing keys")
}


/// Keys the in-memory limiter tracks at most, bounding its memory under a flood of addresses.
const LIMITER_CAPACITY: usize = 100_000;

/// The in-memory limiter shared by the route limits and the code limits; `None` when
/// `rate_limit.enabled = false`.
/// The Redis connection of `rate_limit.backend = "redis"`, which also keeps spent bot-check tokens.
async fn redis(config: &Config) -> anyhow::Result<Option<RedisStore>> {
    if config.rate_limit.backend != RateLimitBackend::Redis {
        return Ok(None);
    }
    let url = config.rate_limit.redis_url.as_deref().context("rate_limit.redis_url is required with the redis backend")?;
    Ok(Some(RedisStore::connect(url, &config.rate_limit.redis_prefix).await?))
}

fn limiter(config: &Config, clock: Clock, redis: Option<&RedisStore>) -> anyhow::Result<Option<Arc<RateLimiter>>> {
    if !config.rate_limit.enabled {
        return Ok(None);
    }
    let limits = Limits::from_config(&config.rate_limit).map_err(anyhow::Error::msg)?;
    let limiter = match redis {
        Some(redis) => RateLimiter::Redis { redis: redis.clone(), limits },
        None => RateLimiter::Memory(MemoryLimiter::new(limits, clock, LIMITER_CAPACITY)),
    };
    Ok(Some(Arc::new(limiter)))
}

fn code_service(config: &Config, auth: Arc<Auth>, limiter: Option<Arc<RateLimiter>>) -> anyhow::Result<CodeService> {
    let secret = config.secret.as_ref().context("`secret` is missing")?;
    // An IP address makes no valid sender domain, so such hosts fall back to localhost.
    let host = url::Url::parse(&config.base_url())
        .ok()
        .and_then(|url| match url.host() {
            Some(url::Host::Domain(domain)) => Some(domain.to_string()),
            _ => None,
        })
        .unwrap_or_else(|| "localhost".into());
    let default_from = format!("no-reply@{host}");
    let mailer = mail::from_config(&config.mail, &default_from)?;
    let policy = CodePolicy {
        length: config.email_otp.length,
        expires_in: config.email_otp.expires_in.get(),
        max_attempts: config.email_otp.max_attempts,
    };
    Ok(CodeService::new(auth, CodeHasher::new(secret), mailer, limiter, policy))
}

/// Owns what [`Doorman::start`] opened; [`Handle::shutdown`] stops the tasks and closes the store.
pub struct Handle {
    store: Store,
    auth: Arc<Auth>,
    tokens: Arc<TokenIssuer>,
    /// The upload route's writer, whose pool closes at shutdown.
    uploader: Option<Arc<Uploader>>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Handle {
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Reads the signing keys from the store now, as the periodic reload does.
    ///
    /// # Errors
    /// A store failure.
    pub async fn reload_keys(&self) -> Result<(), CoreError> {
        self.tokens.reload().await
    }

    /// Makes the next upload read the synced tables' catalog again, as it does each minute.
    pub async fn reload_sync_catalog(&self) {
        if let Some(uploader) = &self.uploader {
            uploader.target().forget_catalog().await;
        }
    }

    /// Runs one sweep of expired sessions and verifications now.
    ///
    /// # Errors
    /// A store failure.
    pub async fn sweep(&self) -> Result<SweepCounts, CoreError> {
        self.auth.sweep().await
    }

    /// Stops the background tasks, then lets queued writes finish and closes the store.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        self.store.close().await;
        if let Some(uploader) = &self.uploader {
            uploader.target().close().await;
        }
        info!("store closed");
    }
}

/// Runs `work` every `period`, first after one period, until `stopped` changes.
async fn every<F, Fut>(period: Duration, mut stopped: watch::Receiver<bool>, mut work: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;

    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stopped.changed() => return,
        }
        work().await;
    }
}

async fn sweep(auth: &Auth) {
    match auth.sweep().await {
        Ok(counts) => debug!(sessions = counts.sessions, verifications = counts.verifications, "expired rows swept"),
        Err(error) => error!(error = format!("{error:#}"), "sweeping expired rows failed"),
    }
}

async fn reload_keys(tokens: &TokenIssuer) {
    if let Err(error) = tokens.reload().await {
        error!(error = format!("{error:#}"), "reloading the signing keys failed");
    }
}
