//! `doorman devices list|revoke`: the sync gateway's device registry.

use anyhow::bail;
use clap::Subcommand;

use crate::config::Config;
use crate::core::time::{Clock, Millis};
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum DevicesCommand {
    /// Lists devices, newest first: id, user id, name, last seen, revoked.
    List {
        /// Lists only this user's devices.
        #[arg(long)]
        user: Option<String>,
    },
    /// Revokes a device: it gets no sync token and no upload until the user's device is deleted.
    Revoke { id: String },
}

/// Runs a devices command against the configured store.
///
/// # Errors
/// A device that does not exist or is already revoked, or a store failure.
pub async fn run(config: &Config, command: DevicesCommand) -> anyhow::Result<()> {
    let store = Store::open(&config.database).await?;
    store.migrate().await?;
    let result = execute(&store, command).await;
    store.close().await;
    result
}

async fn execute(store: &Store, command: DevicesCommand) -> anyhow::Result<()> {
    match command {
        DevicesCommand::List { user } => {
            println!("{:<32}  {:<32}  {:<24}  {:<24}  revoked", "id", "user", "name", "last seen");
            for device in store.list_devices(user.as_deref()).await? {
                let revoked = device.revoked_at.map(|at| Millis(at).to_wire()).unwrap_or_default();
                println!(
                    "{:<32}  {:<32}  {:<24}  {:<24}  {revoked}",
                    device.id,
                    device.user_id,
                    device.name,
                    Millis(device.last_seen).to_wire()
                );
            }
        }
        DevicesCommand::Revoke { id } => {
            if !store.revoke_device(&id, Clock::system().now()).await? {
                bail!("device {id} does not exist or is already revoked");
            }
            println!("device {id} revoked");
        }
    }
    Ok(())
}
