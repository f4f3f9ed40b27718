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
use tracing::{error, info};

pub use self::catalog::CatalogError;
use self::catalog::Catalog;
use super::postgres::{lazy_pool, map_error};
use super::StoreError;
use crate::config::{DatabaseConfig, SyncConfig};

/// How long a catalog read stays in use before the next batch reads it again, so schema changes
/// of the app reach running instances.
const CATALOG_TTL: Duration = Duration::from_secs(60);
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
    /// Writable columns by table, from `sync.tables`.
    tables: BTreeMap<String, Vec<String>>,
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
            tables: sync.tables.iter().map(|(name, table)| (name.clone(), table.columns.clone())).collect(),
            catalog: Mutex::new(None),
            step_timeout: database.statement_timeout.get() + STEP_MARGIN,
        })
    }

    /// Creates `upload_rejections` when missing and reads the catalog.
    ///
    /// # Errors
    /// `Mismatch` when the tables do not fit `sync.tables`, `Database` when the database cannot
    /// be reached.
    pub async fn prepare(&self) -> Result<(), CatalogError> {
        let mut cached = self.catalog.lock().await;
        let catalog = tokio::time::timeout(self.step_timeout, self.read_catalog())
            .await
            .map_err(|_| CatalogError::Timeout(self.step_timeout.as_millis()))??;
        *cached = Some((Instant::now(), Arc::new(catalog)));
        Ok(())
    }

    /// Returns the catalog, read again when older than a minute.
    async fn catalog(&self) -> Result<Arc<Catalog>, StoreError> {
        let mut cached = self.catalog.lock().await;
        if let Some((read_at, catalog)) = cached.as_ref() {
            if read_at.elapsed() < CATALOG_TTL {
                return Ok(catalog.clone());
            }
        }
        match self.step(async { Ok(self.read_catalog().await) }).await? {
            Ok(catalog) => {
                let catalog = Arc::new(catalog);
                *cached = Some((Instant::now(), catalog.clone()));
                Ok(catalog)
            }
            Err(CatalogError::Database(error)) => Err(map_error(error)),
            Err(timeout @ CatalogError::Timeout(_)) => Err(StoreError::Unavailable(timeout.into())),
            Err(mismatch @ CatalogError::Mismatch(_)) => {
                // The app's schema changed under a running instance; the client keeps its batch
                // and retries once an operator has fixed the schema or `sync.tables`.
                error!(error = %mismatch, "uploads are paused");
                Err(StoreError::Unavailable(mismatch.into()))
            }
        }
    }

    async fn read_catalog(&self) -> Result<Catalog, CatalogError> {
        let mut connection = self.pool.acquire().await?;
        self.create_rejections_table(&mut connection).await?;
        catalog::load(&mut connection, &self.schema, &self.owner_column, &self.tables).await
    }

    /// Creates the rejections table under an advisory lock, so instances starting together do
    /// not race. An existing table is left alone, so the role then needs no `CREATE` right.
    async fn create_rejections_table(&self, connection: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
        let name = format!("{}.{REJECTIONS_TABLE}", quote(&self.schema));
        let exists: Option<String> =
            sqlx::query_scalar("SELECT to_regclass($1)::text").bind(&name).fetch_one(&mut *connection).await?;
        if exists.is_some() {
            return Ok(());
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
        Ok(())
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
