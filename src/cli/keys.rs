//! `doorman keys list|rotate`: the JWT signing key rings.

use clap::{Subcommand, ValueEnum};

use crate::config::{Config, Duration};
use crate::core::jwt;
use crate::core::keys::{KeyCipher, Purpose};
use crate::core::time::{Clock, Millis};
use crate::store::Store;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PurposeArg {
    General,
    Sync,
}

impl From<PurposeArg> for Purpose {
    fn from(argument: PurposeArg) -> Self {
        match argument {
            PurposeArg::General => Purpose::General,
            PurposeArg::Sync => Purpose::Sync,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Lists the keys of both rings: kid, purpose, algorithm, activation and retirement.
    List,
    /// Adds a key that is published at once and signs after the grace period; the current keys
    /// stay published until the last token they signed has expired.
    Rotate {
        #[arg(long, value_enum, default_value = "general")]
        purpose: PurposeArg,
        /// Time between publication and first signature, longer than verifiers' JWKS refresh.
        #[arg(long, default_value = "15m")]
        grace: Duration,
    },
}

/// Runs a keys command against the configured store.
///
/// # Errors
/// A missing secret, or a store failure.
pub async fn run(config: &Config, command: KeysCommand) -> anyhow::Result<()> {
    let secret = config.secret.as_ref().ok_or_else(|| anyhow::anyhow!("`secret` is missing"))?;
    let cipher = KeyCipher::new(secret, &config.secrets);
    let store = Store::open(&config.database).await?;
    store.migrate().await?;
    jwt::ensure_first_keys(&store, &cipher, Clock::system().now(), &config.sync.alg).await?;
    let result = execute(config, &store, &cipher, command).await;
    store.close().await;
    result
}

async fn execute(config: &Config, store: &Store, cipher: &KeyCipher, command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::List => {
            println!("{:<32}  {:<8}  {:<6}  {:<24}  retires", "kid", "purpose", "alg", "activates");
            for purpose in [Purpose::General, Purpose::Sync] {
                for key in store.signing_keys(purpose.name()).await? {
                    let retires = key.retired_at.map(|at| Millis(at).to_wire()).unwrap_or_default();
                    println!(
                        "{:<32}  {:<8}  {:<6}  {:<24}  {retires}",
                        key.kid,
                        key.purpose,
                        key.alg,
                        key.activates_at.to_wire()
                    );
                }
            }
        }
        KeysCommand::Rotate { purpose, grace } => {
            let purpose = Purpose::from(purpose);
            let lifetime = match purpose {
                Purpose::General => config.jwt.expires_in.get(),
                Purpose::Sync => config.sync.token_ttl.get(),
            };
            let alg = match purpose {
                Purpose::General => crate::core::keys::ED25519,
                Purpose::Sync => config.sync.alg.as_str(),
            };
            let key = jwt::rotate(store, cipher, purpose, alg, Clock::system().now(), grace.get(), lifetime).await?;
            println!("key {} ({}) signs from {}", key.kid, purpose.name(), key.activates_at.to_wire());
        }
    }
    Ok(())
}
