//! The PostgreSQL database that PowerSync replicates, where upload batches are written.
//!
//! Only the tables of `sync.tables` are touched, by SQL built from the catalog: identifiers come
//! from the configuration and the catalog, values are always bound parameters.

mod batch;
mod catalog;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::postgres::PgPool;
use tokio::sync::Mutex;
use tracing::{error, info, warn};

pub use self::catalog::CatalogError;
use self::catalog::Catalog;
use super::postgres::{lazy_pool, map_error};
use super::StoreError;
use crate::config::{DatabaseConfig, SyncConfig, SyncTable};

/// How long a catalog read stays in use before the next batch reads it again, so schema changes
/// of the app reach running instances.
const CATALOG_TTL: Duration = Duration::from_secs(60);
/// The same for a catalog with a table that does not fit, so uploads resume soon after a fix.
const BROKEN_CATALOG_TTL: Duration = Duration::from_secs(5);
/// Time added to the statement timeout before a step counts as unanswered.
const STEP_MARGIN: Duration = Duration::from_secs(1);
/// Name of the table of rejected operations, in `sync.schema`.
const REJECTIONS_TABLE: &str = "upload_rejections";
/// Key of the advisory lock taken while creating the rejections table.
const REJECTIONS_LOCK: i64 = 0x646f_6f72_6d61_6e01;

/// The synced database and the shape of its writable tables.
pub struct UploadTarget {
    pool: PgPool,
    schema: String,
    owner_column: String,
    /// The writable tables, from `sync.tables`.
    tables: BTreeMap<String, SyncTable>,
    /// The last catalog read and when it was read.
    catalog: Mutex<Option<(Instant, Arc<Catalog>)>>,
    /// Maximum wait for one statement's response.
    step_timeout: Duration,
}

impl UploadTarget {
    /// Builds the pool over `sync.database_url`, with the pool settings of `database`;
    /// connections open on first use.
    ///
    /// # Errors
    /// A URL that is not a valid `postgres://` URL.
    pub fn open(sync: &SyncConfig, database: &DatabaseConfig) -> anyhow::Result<Self> {
        let url = sync.database_url.as_deref().context("sync.database_url is not set")?;
        let pool = lazy_pool(url, "sync.database_url", "doorman-sync", database)?;
        Ok(Self {
            pool,
            schema: sync.schema.clone(),
            owner_column: sync.owner_column.clone(),
            tables: sync.tables.clone(),
            catalog: Mutex::new(None),
            step_timeout: database.statement_timeout.get() + STEP_MARGIN,
        })
    }

    /// Creates `upload_rejections` when missing and reads the catalog; at start, every table must
    /// fit.
    ///
    /// # Errors
    /// `Mismatch` when the tables do not fit `sync.tables`, `Database` when the database rejects a
    /// statement or the login, `Unreachable` or `Timeout` when it cannot be reached.
    pub async fn prepare(&self) -> Result<(), CatalogError> {
        match self.prepare_catalog().await {
            Err(error) if error.is_unreachable() => {
                let cause = self.connection_error().await.unwrap_or_else(|| error.to_string());
                Err(CatalogError::Unreachable(cause))
            }
            other => other,
        }
    }

    async fn prepare_catalog(&self) -> Result<(), CatalogError> {
        let mut cached = self.catalog.lock().await;
        let catalog = tokio::time::timeout(self.step_timeout, self.read_catalog())
            .await
            .map_err(|_| CatalogError::Timeout(self.step_timeout.as_millis()))??;
        let problems = catalog.problems();
        if !problems.is_empty() {
            return Err(CatalogError::Mismatch(problems));
        }
        *cached = Some((Instant::now(), Arc::new(catalog)));
        Ok(())
    }

    /// Returns the catalog, read again when older than a minute.
    ///
    /// A table that no longer fits `sync.tables`, after an app migration on a running instance,
    /// pauses the uploads that touch it and no others. Its clients keep their batches and retry
    /// once an operator has fixed the schema or the configuration.
    async fn catalog(&self) -> Result<Arc<Catalog>, StoreError> {
        let mut cached = self.catalog.lock().await;
        if let Some((read_at, catalog)) = cached.as_ref() {
            let ttl = if catalog.broken.is_empty() { CATALOG_TTL } else { BROKEN_CATALOG_TTL };
            if read_at.elapsed() < ttl {
                return Ok(catalog.clone());
            }
        }
        let catalog = match self.step(async { Ok(self.read_catalog().await) }).await? {
            Ok(catalog) => Arc::new(catalog),
            Err(CatalogError::Database(error)) => return Err(map_error(error)),
            Err(mismatch @ CatalogError::Mismatch(_)) => {
                error!(error = %mismatch, "uploads are paused until the synced database fits sync.tables");
                return Err(StoreError::Unavailable(mismatch.into()));
            }
            Err(timeout) => return Err(StoreError::Unavailable(timeout.into())),
        };
        let problems = catalog.problems();
        if !problems.is_empty() {
            error!(problems = %problems.join("; "), "uploads to these tables are paused until the schema fits sync.tables");
        }
        *cached = Some((Instant::now(), catalog.clone()));
        Ok(catalog)
    }

    /// Drops the cached catalog, so the next batch reads it again, as after a statement found
    /// the schema changed.
    pub async fn forget_catalog(&self) {
        *self.catalog.lock().await = None;
    }

    /// Reads the catalog now, so a table that stopped fitting is logged even while no client
    /// uploads.
    pub async fn check_catalog(&self) {
        self.forget_catalog().await;
        if let Err(StoreError::Unavailable(cause) | StoreError::Other(cause)) = self.catalog().await {
            warn!(error = format!("{cause:#}"), "reading the synced tables' catalog failed");
        }
    }

    /// Reads the catalog again and returns whether `table` still takes uploads, after a statement
    /// on it was refused for lack of privileges.
    async fn still_permitted(&self, table: &str) -> Result<bool, StoreError> {
        self.forget_catalog().await;
        let catalog = self.catalog().await?;
        Ok(!catalog.broken.contains_key(table))
    }

    async fn read_catalog(&self) -> Result<Catalog, CatalogError> {
        let mut connection = self.pool.acquire().await?;
        let rights: Option<(bool, bool)> = sqlx::query_as(
            "SELECT has_schema_privilege(oid, 'USAGE'), has_schema_privilege(oid, 'CREATE') FROM pg_namespace WHERE nspname = $1",
        )
        .bind(&self.schema)
        .fetch_optional(&mut *connection)
        .await?;
        let can_create = match rights {
            None => return Err(CatalogError::Mismatch(vec![format!("schema {} does not exist (sync.schema)", self.schema)])),
            Some((false, _)) => {
                let problem = format!("the role of sync.database_url lacks USAGE on schema {}", self.schema);
                return Err(CatalogError::Mismatch(vec![problem]));
            }
            Some((true, can_create)) => can_create,
        };
        let insertable = self.create_rejections_table(&mut connection, can_create).await?;
        let mut catalog = catalog::load(&mut connection, &self.schema, &self.owner_column, &self.tables).await?;
        if !insertable {
            let problem = format!("the role of sync.database_url lacks INSERT on table {}.{REJECTIONS_TABLE}", self.schema);
            catalog.broken.insert(REJECTIONS_TABLE.to_string(), vec![problem]);
        }
        Ok(catalog)
    }

    /// Creates the rejections table under an advisory lock, so instances starting together do
    /// not race, and returns whether the role may insert into it. An existing table is left
    /// alone, so the role then needs no `CREATE` right.
    async fn create_rejections_table(&self, connection: &mut sqlx::PgConnection, can_create: bool) -> Result<bool, CatalogError> {
        let name = format!("{}.{REJECTIONS_TABLE}", quote(&self.schema));
        let insertable: Option<bool> = sqlx::query_scalar("SELECT has_table_privilege(to_regclass($1), 'INSERT')")
            .bind(&name)
            .fetch_one(&mut *connection)
            .await?;
        if let Some(insertable) = insertable {
            return Ok(insertable);
        }

        if !can_create {
            let problem = format!(
                "the role of sync.database_url lacks CREATE on schema {}, which creating {REJECTIONS_TABLE} needs; \
                 grant it, or run `doorman migrate` once with a role that has it",
                self.schema
            );
            return Err(CatalogError::Mismatch(vec![problem]));
        }

        let mut transaction = sqlx::Connection::begin(&mut *connection).await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(REJECTIONS_LOCK).execute(&mut *transaction).await?;
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {name} (\
                id text PRIMARY KEY, \
                user_id text NOT NULL, \
                device_id text NOT NULL, \
                op text, \
                type text, \
                row_id text, \
                code text NOT NULL, \
                message text NOT NULL, \
                created_at timestamptz NOT NULL)"
        );
        sqlx::query(&sql).execute(&mut *transaction).await?;
        let index = format!("CREATE INDEX IF NOT EXISTS upload_rejections_user_created ON {name} (user_id, created_at)");
        sqlx::query(&index).execute(&mut *transaction).await?;
        transaction.commit().await?;

        info!(schema = %self.schema, "created the upload_rejections table");
        Ok(true)
    }

    /// Fails `operation` as unavailable when the database does not respond within the statement
    /// timeout and a margin, as in a network partition.
    async fn step<T>(&self, operation: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        match tokio::time::timeout(self.step_timeout, operation).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Unavailable(anyhow::anyhow!(
                "the synced database did not respond within {} ms",
                self.step_timeout.as_millis()
            ))),
        }
    }

    /// Opens one connection outside the pool and returns why it failed, since a pool that timed
    /// out hides the cause, such as a refused connection.
    async fn connection_error(&self) -> Option<String> {
        let options = self.pool.connect_options();
        let attempt = tokio::time::timeout(self.step_timeout, <sqlx::PgConnection as sqlx::Connection>::connect_with(&options)).await;
        match attempt {
            Ok(Ok(connection)) => {
                let _ = sqlx::Connection::close(connection).await;
                None
            }
            Ok(Err(error)) => Some(error.to_string()),
            Err(_) => Some(format!("no connection within {} ms", self.step_timeout.as_millis())),
        }
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Quotes a PostgreSQL identifier with double quotes.
fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote("notes"), "\"notes\"");
        assert_eq!(quote("we\"ird"), "\"we\"\"ird\"");
    }
}
