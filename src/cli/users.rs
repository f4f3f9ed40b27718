//! `doorman users list|show|create|delete`: the operator's view of users.

use anyhow::{bail, Context};
use clap::Subcommand;

use crate::config::Config;
use crate::core::email::Email;
use crate::core::events::OutboxEvent;
use crate::core::random;
use crate::core::time::Clock;
use crate::store::{Store, StoreError, UserRecord};

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Lists users, newest first: id, email, whether a guest, creation time.
    List {
        /// Maximum number of users to list.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Shows one user.
    Show { id: String },
    /// Creates a user with an unverified email, as an operator or a later sign-in method leaves
    /// it; its first code sign-in verifies the email.
    Create {
        #[arg(long)]
        email: String,
    },
    /// Deletes a user with its sessions and accounts, and records a user.deleted event.
    Delete { id: String },
}

/// Runs a users command against the configured store.
///
/// # Errors
/// A user that does not exist, an email that is invalid or taken, or a store failure.
pub async fn run(config: &Config, command: UsersCommand) -> anyhow::Result<()> {
    let store = Store::open(&config.database).await?;
    store.migrate().await?;
    let result = execute(&store, command).await;
    store.close().await;
    result
}

async fn execute(store: &Store, command: UsersCommand) -> anyhow::Result<()> {
    let clock = Clock::system();
    match command {
        UsersCommand::List { limit } => {
            println!("{:<32}  {:<40}  {:<9}  created", "id", "email", "anonymous");
            for user in store.list_users(limit).await? {
                println!("{:<32}  {:<40}  {:<9}  {}", user.id, user.email, user.is_anonymous, user.created_at.to_wire());
            }
        }
        UsersCommand::Show { id } => {
            let Some(user) = store.find_user(&id).await? else {
                bail!("user {id} does not exist");
            };
            print_user(&user);
        }
        UsersCommand::Create { email } => {
            let email = Email::parse(&email).map_err(|reason| anyhow::anyhow!("invalid email: {reason}"))?;
            let now = clock.now();
            let user = UserRecord {
                id: random::new_id(),
                email: email.as_str().to_string(),
                email_verified: false,
                name: String::new(),
                image: None,
                is_anonymous: false,
                created_at: now,
                updated_at: now,
            };
            match store.create_user(user.clone()).await {
                Ok(()) => print_user(&user),
                Err(StoreError::Conflict(_)) => bail!("a user with that email already exists"),
                Err(error) => return Err(error).context("creating the user"),
            }
        }
        UsersCommand::Delete { id } => {
            let event = OutboxEvent::user_deleted(&id, clock.now());
            if !store.delete_user(&id, false, event).await? {
                bail!("user {id} does not exist");
            }
            println!("user {id} deleted");
        }
    }
    Ok(())
}

fn print_user(user: &UserRecord) {
    println!("id:             {}", user.id);
    println!("email:          {}", user.email);
    println!("email_verified: {}", user.email_verified);
    println!("name:           {}", user.name);
    println!("image:          {}", user.image.as_deref().unwrap_or(""));
    println!("anonymous:      {}", user.is_anonymous);
    println!("created_at:     {}", user.created_at.to_wire());
    println!("updated_at:     {}", user.updated_at.to_wire());
}
