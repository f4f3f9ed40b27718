//! The `doorman` command line: `serve`, `migrate`, `config check`, `users`, `devices`, `keys`.

mod devices;
mod keys;
mod users;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::app::Doorman;
use crate::config::{self, Config, LoadOptions};
use crate::server::{self, ServeOptions};
use crate::core::jwt;
use crate::core::keys::KeyCipher;
use crate::core::time::Clock;
use crate::store::upload::UploadTarget;
use crate::store::{Engine, Store};
use crate::telemetry::{self, LogFormat};

/// Doorman: an authentication server with anonymous guest sessions, speaking Better Auth's HTTP
/// protocol.
#[derive(Debug, Parser)]
#[command(name = "doorman", version)]
pub struct Cli {
    /// Configuration file; without it, doorman.toml in the working directory is read if present.
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,

    /// Format of the log lines written to standard error.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the server until SIGINT or SIGTERM.
    Serve {
        /// Development mode: SQLite file doorman.db, a generated secret kept beside it, mail printed
        /// to standard output, no bot check, guests enabled.
        #[arg(long)]
        dev: bool,
    },
    /// Applies the database migrations and exits.
    Migrate,
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// User commands.
    Users {
        #[command(subcommand)]
        command: users::UsersCommand,
    },
    /// Signing key commands.
    Keys {
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// Device commands of the sync gateway.
    Devices {
        #[command(subcommand)]
        command: devices::DevicesCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Loads and checks the configuration, then prints it with secrets and URL passwords redacted.
    Check,
}

/// Parses the arguments and runs the command.
pub async fn run() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);

    let result = match cli.command {
        Command::Serve { dev } => serve(cli.config, dev).await,
        Command::Migrate => migrate(cli.config).await,
        Command::Config { command: ConfigCommand::Check } => check_config(cli.config),
        Command::Users { command } => match load_config(cli.config, false) {
            Ok(config) => users::run(&config, command).await,
            Err(error) => Err(error),
        },
        Command::Keys { command } => match load_config(cli.config, false) {
            Ok(config) => keys::run(&config, command).await,
            Err(error) => Err(error),
        },
        Command::Devices { command } => match load_config(cli.config, false) {
            Ok(config) => devices::run(&config, command).await,
            Err(error) => Err(error),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(path: Option<PathBuf>, dev: bool) -> anyhow::Result<Config> {
    let loaded = config::load(LoadOptions { path, dev, env: std::env::vars().collect() })?;
    for warning in &loaded.warnings {
        warn!("{warning}");
    }
    Ok(loaded.config)
}

async fn serve(path: Option<PathBuf>, dev: bool) -> anyhow::Result<()> {
    let mut config = load_config(path, dev)?;
    let shutdown = server::shutdown_signal().context("installing the signal handlers")?;
    let listener = TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("binding {}", config.server.listen))?;
    let address = listener.local_addr()?;
    if config.server.base_url.is_none() {
        // With port 0 the bound port is known only now, and the default base URL must name it.
        config.server.base_url = Some(format!("http://{address}"));
    }
    log_summary(&config);

    let (router, handle) = Doorman::start(config.clone()).await?;
    info!(%address, "listening");

    let options = ServeOptions {
        header_read_timeout: config.server.header_read_timeout.get(),
        max_connections: config.server.max_connections,
        shutdown_timeout: config.server.shutdown_timeout.get(),
    };
    server::serve(listener, router, options, shutdown).await;
    handle.shutdown().await;
    info!("stopped");
    Ok(())
}

fn log_summary(config: &Config) {
    let database = match Engine::of(&config.database.url) {
        Some(Engine::Sqlite) => "sqlite",
        Some(Engine::Postgres) => "postgres",
        None => "unknown",
    };
    info!(
        version = env!("CARGO_PKG_VERSION"),
        listen = %config.server.listen,
        base_url = %config.base_url(),
        base_path = %config.server.base_path,
        database,
        guests = config.anonymous.enabled,
        bearer = config.session.bearer,
        cookie_prefix = %config.session.cookie_prefix,
        trusted_origins = config.server.trusted_origins.len(),
        dev_mode = config.dev_mode,
        "starting doorman"
    );
}

async fn migrate(path: Option<PathBuf>) -> anyhow::Result<()> {
    let config = load_config(path, false)?;
    let secret = config.secret.as_ref().context("`secret` is missing")?;
    let store = Store::open(&config.database).await?;
    store.migrate().await?;
    let cipher = KeyCipher::new(secret, &config.secrets);
    jwt::ensure_first_keys(&store, &cipher, Clock::system().now(), &config.sync.alg).await?;
    store.close().await;
    info!("migrations applied");

    if config.sync.database_url.is_some() {
        // The synced database is the app's: Doorman only adds `upload_rejections` there and checks
        // the tables of `sync.tables`.
        let target = UploadTarget::open(&config.sync, &config.database)?;
        let prepared = target.prepare().await;
        target.close().await;
        prepared.context("preparing the synced database (sync.database_url)")?;
        info!(schema = %config.sync.schema, "synced database ready for uploads");
    }
    Ok(())
}

fn check_config(path: Option<PathBuf>) -> anyhow::Result<()> {
    let config = load_config(path, false)?;
    print!("{}", config::redacted_toml(&config)?);
    Ok(())
}
