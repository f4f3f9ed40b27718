//! The PostgreSQL store: a connection pool with an acquire timeout and a statement timeout, each
//! multi-step write in one transaction.

mod codes;
mod devices;
mod keys;

use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{PgConnection, Postgres, Transaction};

use super::{
    SessionRecord, SessionSelector, SessionUserRow, StoreError, SweepCounts, UserChanges, UserRecord, SESSION_USER_COLUMNS,
};
use crate::config::DatabaseConfig;
use crate::core::events::OutboxEvent;
use crate::core::time::Millis;
use crate::core::token::TokenHash;

/// The embedded migrations. Versions applied by a newer release are tolerated, so an older
/// release can still start and serve during a rollout or a rollback.
fn migrator() -> Migrator {
    let mut migrator = sqlx::migrate!("./migrations/postgres");
    migrator.set_ignore_missing(true);
    migrator
}

/// Builds a pool on `url` whose connections open on first use, carry `application_name` and the
/// statement timeout, and follow the pool settings of `config`. `key` names the URL's setting in
/// the error.
///
/// # Errors
/// A URL that is not a valid `postgres://` URL.
pub(crate) fn lazy_pool(url: &str, key: &str, application_name: &str, config: &DatabaseConfig) -> anyhow::Result<PgPool> {
    let statement_timeout = config.statement_timeout.get().as_millis().to_string();
    let options = PgConnectOptions::from_str(url)
        .with_context(|| format!("{key} is not a valid postgres:// URL"))?
        .application_name(application_name)
        .options([("statement_timeout", statement_timeout.as_str())]);
    Ok(PgPoolOptions::new()
        .max_connections(config.max_connections.max(1))
        .acquire_timeout(config.acquire_timeout.get())
        .connect_lazy_with(options))
}

/// Time added to the acquire and statement timeouts before a use case counts as unanswered.
const DEADLINE_MARGIN: Duration = Duration::from_secs(1);

/// Columns of `users`, in `UserRecord` order.
const USER_COLUMNS: &str = "id, email, email_verified, name, image, is_anonymous, created_at, updated_at";
/// Columns of `sessions`, in `SessionRecord` order.
const SESSION_COLUMNS: &str = "id, user_id, token_hash, expires_at, created_at, updated_at, ip_address, user_agent";

#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// Longest a use case may take: a connection acquire plus a full statement, with a margin.
    deadline: Duration,
}

impl PostgresStore {
    /// Builds the pool; connections open on first use. `serve` applies the migrations right
    /// after, so a database that is unreachable at start stops the start with an error.
    ///
    /// # Errors
    /// An invalid URL.
    pub async fn open(config: &DatabaseConfig) -> anyhow::Result<Self> {
        let pool = lazy_pool(&config.url, "database.url", "doorman", config)?;
        let deadline = config.acquire_timeout.get() + config.statement_timeout.get() + DEADLINE_MARGIN;
        Ok(Self { pool, deadline })
    }

    /// Fails `operation` as unavailable when it takes longer than the deadline.
    pub async fn bounded<T>(&self, operation: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        match tokio::time::timeout(self.deadline, operation).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Unavailable(anyhow::anyhow!(
                "the database did not respond within {} ms",
                self.deadline.as_millis()
            ))),
        }
    }

    /// Applies the migrations under PostgreSQL's advisory lock, so several instances may start
    /// together.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        migrator().run(&self.pool).await.context("applying PostgreSQL migrations")
    }

    pub async fn ready(&self) -> anyhow::Result<()> {
        let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(&self.pool)
            .await
            .context("reading the applied migrations")?;
        super::check_migrations_applied(&migrator(), &applied)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn create_guest(&self, user: UserRecord, session: SessionRecord) -> Result<(), StoreError> {
        let mut transaction = self.begin().await?;
        insert_user(&mut transaction, &user).await?;
        insert_session(&mut transaction, &session).await?;
        transaction.commit().await.map_err(map_error)
    }

    pub async fn find_session(&self, hash: &TokenHash) -> Result<Option<(SessionRecord, UserRecord)>, StoreError> {
        let sql = format!("SELECT {SESSION_USER_COLUMNS} FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1");
        let row: Option<SessionUserRow> =
            sqlx::query_as(&sql).bind(&hash.0).fetch_optional(&self.pool).await.map_err(map_error)?;
        Ok(row.map(SessionUserRow::into_records))
    }

    pub async fn extend_session(&self, session_id: &str, expires_at: Millis, now: Millis) -> Result<bool, StoreError> {
        let result = sqlx::query("UPDATE sessions SET expires_at = $1, updated_at = $2 WHERE id = $3")
            .bind(expires_at.0)
            .bind(now.0)
            .bind(session_id)
            .execute(&self.pool)
            .await
            .map_err(map_error)?;
        Ok(result.rows_affected() == 1)
    }

    pub async fn delete_session(&self, session_id: &str) -> Result<bool, StoreError> {
        let result = sqlx::query("DELETE FROM sessions WHERE id = $1")
            .bind(session_id)
            .execute(&self.pool)
            .await
            .map_err(map_error)?;
        Ok(result.rows_affected() == 1)
    }

    pub async fn revoke_user_session(&self, user_id: &str, selector: SessionSelector) -> Result<Option<String>, StoreError> {
        let (sql, value) = match &selector {
            SessionSelector::TokenHash(hash) => ("DELETE FROM sessions WHERE token_hash = $1 AND user_id = $2 RETURNING id", &hash.0),
            SessionSelector::Id(id) => ("DELETE FROM sessions WHERE id = $1 AND user_id = $2 RETURNING id", id),
        };
        sqlx::query_scalar(sql).bind(value).bind(user_id).fetch_optional(&self.pool).await.map_err(map_error)
    }

    pub async fn list_sessions(&self, user_id: &str, now: Millis) -> Result<Vec<SessionRecord>, StoreError> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE user_id = $1 AND expires_at > $2 ORDER BY created_at, id"
        );
        sqlx::query_as(&sql).bind(user_id).bind(now.0).fetch_all(&self.pool).await.map_err(map_error)
    }

    pub async fn delete_user_sessions(&self, user_id: &str, keep: Option<String>) -> Result<u64, StoreError> {
        let result = sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND id IS DISTINCT FROM $2")
            .bind(user_id)
            .bind(keep)
            .execute(&self.pool)
            .await
            .map_err(map_error)?;
        Ok(result.rows_affected())
    }

    pub async fn update_user(&self, user_id: &str, changes: UserChanges) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE users SET name = COALESCE($1, name), \
                              image = CASE WHEN $2 THEN $3 ELSE image END, \
                              updated_at = $4 \
             WHERE id = $5",
        )
        .bind(changes.name.as_deref())
        .bind(changes.image.is_some())
        .bind(changes.image.clone().flatten())
        .bind(changes.updated_at.0)
        .bind(user_id)
        .execute(&self.pool)
        .await
        .map_err(map_error)?;
        Ok(result.rows_affected() == 1)
    }

    pub async fn delete_user(&self, user_id: &str, only_guest: bool, event: OutboxEvent) -> Result<bool, StoreError> {
        let mut transaction = self.begin().await?;
        let deleted: Option<String> =
            sqlx::query_scalar("DELETE FROM users WHERE id = $1 AND (is_anonymous OR NOT $2) RETURNING id")
                .bind(user_id)
                .bind(only_guest)
                .fetch_optional(&mut *transaction)
                .await
                .map_err(map_error)?;
        if deleted.is_some() {
            insert_event(&mut transaction, &event).await?;
        }
        transaction.commit().await.map_err(map_error)?;
        Ok(deleted.is_some())
    }

    pub async fn sweep_expired(&self, now: Millis) -> Result<SweepCounts, StoreError> {
        let mut transaction = self.begin().await?;
        let sessions = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now.0)
            .execute(&mut *transaction)
            .await
            .map_err(map_error)?
            .rows_affected();
        let verifications = sqlx::query("DELETE FROM verifications WHERE expires_at <= $1")
            .bind(now.0)
            .execute(&mut *transaction)
            .await
            .map_err(map_error)?
            .rows_affected();
        sqlx::query("DELETE FROM spent_tokens WHERE expires_at <= $1")
            .bind(now.0)
            .execute(&mut *transaction)
            .await
            .map_err(map_error)?;
        transaction.commit().await.map_err(map_error)?;
        Ok(SweepCounts { sessions, verifications })
    }

    async fn begin(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        self.pool.begin().await.map_err(map_error)
    }
}

async fn insert_event(connection: &mut PgConnection, event: &OutboxEvent) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO outbox (id, kind, payload, created_at, next_attempt_at) VALUES ($1, $2, $3, $4, $5)")
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

async fn insert_user(connection: &mut PgConnection, user: &UserRecord) -> Result<(), StoreError> {
    insert_user_row(connection, user, "").await
}

/// Inserts a user row; `on_conflict` is an optional `ON CONFLICT` clause appended to the insert.
async fn insert_user_row(connection: &mut PgConnection, user: &UserRecord, on_conflict: &str) -> Result<(), StoreError> {
    let sql = format!("INSERT INTO users ({USER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) {on_conflict}");
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

async fn insert_session(connection: &mut PgConnection, session: &SessionRecord) -> Result<(), StoreError> {
    let sql = format!("INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)");
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

/// Sorts PostgreSQL failures into those a retry may cure (no connection, server shutting down,
/// too many connections, a statement timeout) and the rest.
/// Tells whether a retry of the failed statement may succeed: the database is unreachable, busy,
/// restarting, or cancelled the statement.
pub(crate) fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => true,
        // A connection that closes mid-handshake surfaces as a protocol error, such as an
        // unexpected answer to the TLS request.
        sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(database) => database.code().is_some_and(|code| {
            // Class 08: connection exception; 57P01-57P03: shutdown and start-up; 53300: too many
            // connections; 57014: statement timeout; 40001 and 40P01: serialization and deadlock.
            code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03" | "53300" | "57014" | "40001" | "40P01")
        }),
        _ => false,
    }
}

pub(crate) fn map_error(error: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(database) = &error {
        if database.is_unique_violation() {
            return StoreError::Conflict(database.message().to_string());
        }
    }
    if is_transient(&error) {
        StoreError::Unavailable(error.into())
    } else {
        StoreError::Other(error.into())
    }
}
