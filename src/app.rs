//! Starting Doorman inside a program: the router and a handle that owns the store and the
//! background tasks.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, error, info};

use crate::config::Config;
use crate::core::auth::Auth;
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
        let auth = Arc::new(Auth::new(store.clone(), clock, policy, config.anonymous.enabled));
        let state = AppState::new(&config, auth.clone(), store.clone())?;
        let router = http::router(state, &config.server.base_path);

        let (stop, stopped) = watch::channel(false);
        let sweeper = tokio::spawn(sweep_periodically(auth.clone(), stopped));

        Ok((router, Handle { store, auth, stop, tasks: vec![sweeper] }))
    }
}

/// Owns what [`Doorman::start`] opened; [`Handle::shutdown`] stops the tasks and closes the store.
pub struct Handle {
    store: Store,
    auth: Arc<Auth>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Handle {
    pub fn store(&self) -> &Store {
        &self.store
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
        info!("store closed");
    }
}

async fn sweep_periodically(auth: Arc<Auth>, mut stopped: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(SWEEP_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;

    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stopped.changed() => return,
        }
        match auth.sweep().await {
            Ok(counts) => debug!(sessions = counts.sessions, verifications = counts.verifications, "expired rows swept"),
            Err(error) => error!(error = format!("{error:#}"), "sweeping expired rows failed"),
        }
    }
}
