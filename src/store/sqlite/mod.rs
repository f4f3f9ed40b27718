//! The SQLite store: WAL, `synchronous = FULL`, foreign keys, one writer connection whose
//! transactions start with `BEGIN IMMEDIATE`, and a pool of read-only connections.

mod codes;
mod devices;
mod keys;
mod writer;

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Arguments, ConnectOptions};

use self::writer::Writer;
use super::{
    SessionRecord, SessionSelector, SessionUserRow, StoreError, SweepCounts, UserChanges, UserRecord, SESSION_USER_COLUMNS,
};
use crate::config::DatabaseConfig;
use crate::core::events::OutboxEvent;
use crate::core::time::Millis;
use crate::core::token::TokenHash;

/// Builds owned statement arguments from values that SQLite encodes (strings, integers, booleans
/// and their options).
macro_rules! arguments {
    ($($value:expr),* $(,)?) => {{
        let mut arguments = SqliteArguments::default();
        $(arguments.add($value).expect("SQLite encodes strings, integers and booleans");)*
        arguments
    }};
}

/// The embedded migrations. Versions applied by a newer release are tolerated, so an older
/// release can still start and serve during a rollout or a rollback.
fn migrator() -> Migrator {
    let mut migrator = sqlx::migrate!("./migrations/sqlite");
    migrator.set_ignore_missing(true);
    migrator
}

/// How long a connection waits for another process's write lock (the CLI may write meanwhile).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Columns of `users`, in `UserRecord` order.
const USER_COLUMNS: &str = "id, email, email_verified, name, image, is_anonymous, created_at, updated_at";
/// Columns of `sessions`, in `SessionRecord` order.
const SESSION_COLUMNS: &str = "id, user_id, token_hash, expires_at, created_at, updated_at, ip_address, user_agent";

#[derive(Clone)]
pub struct SqliteStore {
    readers: SqlitePool,
    writer: Writer,
}

impl SqliteStore {
    /// Opens (creating when missing) the database file and starts the writer task.
    ///
    /// # Errors
    /// An invalid URL, or a file that cannot be opened or switched to WAL.
    pub async fn open(config: &DatabaseConfig) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(&config.url)
            .with_context(|| "database.url is not a valid sqlite: URL")?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            .log_statements(tracing::log::LevelFilter::Trace);

        let connection = options.connect().await.context("opening the SQLite database")?;
        let readers = SqlitePoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .acquire_timeout(config.acquire_timeout.get())
            .connect_with(options.read_only(true))
            .await
            .context("opening the SQLite reader pool")?;

        Ok(Self { readers, writer: Writer::spawn(connection) })
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        self.writer
            .write_alone(|connection| {
                Box::pin(async move { migrator().run_direct(connection).await.map_err(|error| StoreError::Other(error.into())) })
            })
            .await
            .context("applying SQLite migrations")
    }

    pub async fn ready(&self) -> anyhow::Result<()> {
        let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(&self.readers)
            .await
            .context("reading the applied migrations")?;
        super::check_migrations_applied(&migrator(), &applied)
    }

    pub async fn close(&self) {
        self.readers.close().await;
        self.writer.close().await;
    }

    pub async fn create_guest(&self, user: UserRecord, session: SessionRecord) -> Result<(), StoreError> {
        self.writer
            .write(move |connection| {
                Box::pin(async move {
                    insert_user(connection, &user).await?;
                    insert_session(connection, &session).await?;
                    Ok(())
                })
            })
            .await
    }

    pub async fn find_session(&self, hash: &TokenHash) -> Result<Option<(SessionRecord, UserRecord)>, StoreError> {
        let sql = format!("SELECT {SESSION_USER_COLUMNS} FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?");
        let row: Option<SessionUserRow> =
            sqlx::query_as(&sql).bind(&hash.0).fetch_optional(&self.readers).await.map_err(map_error)?;
        Ok(row.map(SessionUserRow::into_records))
    }

    pub async fn extend_session(&self, session_id: &str, expires_at: Millis, now: Millis) -> Result<bool, StoreError> {
        let sql = "UPDATE sessions SET expires_at = ?, updated_at = ? WHERE id = ?";
        let changed = self.execute(sql, arguments![expires_at.0, now.0, session_id.to_string()]).await?;
        Ok(changed == 1)
    }

    pub async fn delete_session(&self, session_id: &str) -> Result<bool, StoreError> {
        let changed = self.execute("DELETE FROM sessions WHERE id = ?", arguments![session_id.to_string()]).await?;
        Ok(changed == 1)
    }

    pub async fn revoke_user_session(&self, user_id: &str, selector: SessionSelector) -> Result<Option<String>, StoreError> {
        let user_id = user_id.to_string();
        self.writer
            .write(move |connection| {
                Box::pin(async move {
                    let (sql, value) = match &selector {
                        SessionSelector::TokenHash(hash) => {
                            ("DELETE FROM sessions WHERE token_hash = ? AND user_id = ? RETURNING id", &hash.0)
                        }
                        SessionSelector::Id(id) => ("DELETE FROM sessions WHERE id = ? AND user_id = ? RETURNING id", id),
                    };
                    sqlx::query_scalar(sql)
                        .bind(value)
                        .bind(&user_id)
                        .fetch_optional(&mut *connection)
                        .await
                        .map_err(map_error)
                })
            })
            .await
    }

    pub async fn list_sessions(&self, user_id: &str, now: Millis) -> Result<Vec<SessionRecord>, StoreError> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE user_id = ? AND expires_at > ? ORDER BY created_at, id"
        );
        sqlx::query_as(&sql)
            .bind(user_id)
            .bind(now.0)
            .fetch_all(&self.readers)
            .await
            .map_err(map_error)
    }

    pub async fn delete_user_sessions(&self, user_id: &str, keep: Option<String>) -> Result<u64, StoreError> {
        let sql = "DELETE FROM sessions WHERE user_id = ? AND id IS NOT ?";
        self.execute(sql, arguments![user_id.to_string(), keep]).await
    }

    pub async fn update_user(&self, user_id: &str, changes: UserChanges) -> Result<bool, StoreError> {
        let sql = "UPDATE users SET name = COALESCE(?, name), image = CASE WHEN ? THEN ? ELSE image END, updated_at = ? \
                   WHERE id = ?";
        let UserChanges { name, image, updated_at } = changes;
        let arguments = arguments![name, image.is_some(), image.flatten(), updated_at.0, user_id.to_string()];
        Ok(self.execute(sql, arguments).await? == 1)
    }

    pub async fn delete_user(&self, user_id: &str, only_guest: bool, event: OutboxEvent) -> Result<bool, StoreError> {
        let user_id = user_id.to_string();
        self.writer
            .write(move |connection| {
                Box::pin(async move {
                    let deleted: Option<String> =
                        sqlx::query_scalar("DELETE FROM users WHERE id = ? AND (is_anonymous = 1 OR NOT ?) RETURNING id")
                            .bind(&user_id)
                            .bind(only_guest)
                            .fetch_optional(&mut *connection)
                            .await
                            .map_err(map_error)?;
                    if deleted.is_some() {
                        insert_event(connection, &event).await?;
                    }
                    Ok(deleted.is_some())
                })
            })
            .await
    }

    pub async fn sweep_expired(&self, now: Millis) -> Result<SweepCounts, StoreError> {
        let sessions = self.execute("DELETE FROM sessions WHERE expires_at <= ?", arguments![now.0]).await?;
        let verifications = self.execute("DELETE FROM verifications WHERE expires_at <= ?", arguments![now.0]).await?;
        self.execute("DELETE FROM spent_tokens WHERE expires_at <= ?", arguments![now.0]).await?;
        Ok(SweepCounts { sessions, verifications })
    }

    /// Runs one statement in the next write transaction and returns the number of rows it changed.
    async fn execute(&self, sql: &'static str, arguments: SqliteArguments<'static>) -> Result<u64, StoreError> {
        self.writer
            .write(move |connection| {
                Box::pin(async move {
                    let result = sqlx::query_with(sql, arguments).execute(&mut *connection).await.map_err(map_error)?;
                    Ok(result.rows_affected())
                })
            })
            .await
    }
}

async fn insert_event(connection: &mut sqlx::SqliteConnection, event: &OutboxEvent) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO outbox (id, kind, payload, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?)")
        .bind(&event.id)
        .bind(event.kind)
        .bind(&event.payload)
        .bind(event.created_at.0)
        .bind(event.created_at.0)
        .execute(connection)
        .await
        .map_err(map_error)?;
    Ok(())
}

async fn insert_user(connection: &mut sqlx::SqliteConnection, user: &UserRecord) -> Result<(), StoreError> {
    let sql = format!("INSERT INTO users ({USER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
    sqlx::query(&sql)
        .bind(&user.id)
        .bind(&user.email)
        .bind(user.email_verified)
        .bind(&user.name)
        .bind(user.image.as_deref())
        .bind(user.is_anonymous)
        .bind(user.created_at.0)
        .bind(user.updated_at.0)
        .execute(connection)
        .await
        .map_err(map_error)?;
    Ok(())
}

async fn insert_session(connection: &mut sqlx::SqliteConnection, session: &SessionRecord) -> Result<(), StoreError> {
    let sql = format!("INSERT INTO sessions ({SESSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
    sqlx::query(&sql)
        .bind(&session.id)
        .bind(&session.user_id)
        .bind(&session.token_hash)
        .bind(session.expires_at.0)
        .bind(session.created_at.0)
        .bind(session.updated_at.0)
        .bind(&session.ip_address)
        .bind(&session.user_agent)
        .execute(connection)
        .await
        .map_err(map_error)?;
    Ok(())
}

/// Sorts SQLite failures into those a retry may cure (busy, I/O, pool exhausted) and the rest.
fn map_error(error: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(database) = &error {
        if database.is_unique_violation() {
            return StoreError::Conflict(database.message().to_string());
        }
    }
    let transient = match &error {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::WorkerCrashed => true,
        // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with their extended codes in the low byte.
        sqlx::Error::Database(database) => database
            .code()
            .and_then(|code| code.parse::<i64>().ok())
            .is_some_and(|code| matches!(code & 0xff, 5 | 6)),
        _ => false,
    };
    if transient {
        StoreError::Unavailable(error.into())
    } else {
        StoreError::Other(error.into())
    }
}
