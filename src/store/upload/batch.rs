//! Applying one upload batch in one transaction.

use std::collections::BTreeSet;

use sqlx::postgres::PgDatabaseError;
use sqlx::{PgConnection, Postgres};

use super::catalog::{Catalog, TableShape};
use super::{quote, UploadTarget, REJECTIONS_TABLE};
use crate::core::random;
use crate::core::upload::{Batch, OpKind, PlannedOp, Rejection, RejectionCode, UploadOutcome};
use crate::store::postgres::map_error;
use crate::store::StoreError;

/// Maximum length of a database message kept in a rejection, in characters.
const MAX_MESSAGE_CHARS: usize = 500;

/// Result of one operation.
enum Applied {
    Done,
    /// The id exists under another owner, or under none; the row was left as it was.
    NotOwner,
}

/// Cause of a failed statement.
enum Failure {
    /// A value or constraint error, which rejects the operation that ran the statement.
    Value(String),
    /// The table no longer has the shape the catalog recorded, such as a renamed column.
    Schema(String),
    /// A refusal by row-level security, or a privilege revoked since the catalog was read.
    Denied(String),
    Store(StoreError),
}

/// Cause of a stopped pass over the batch.
enum PassError {
    /// The operation at this position of the batch failed on its values or a constraint.
    Value { position: usize, message: String },
    /// The commit failed on a deferred constraint, which no single operation can be blamed for.
    Commit(String),
    Store(StoreError),
}

impl From<Failure> for PassError {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Value(message) => {
                PassError::Store(StoreError::Other(anyhow::anyhow!("a bookkeeping statement was rejected: {message}")))
            }
            Failure::Schema(message) | Failure::Denied(message) => PassError::Store(table_changed(&message)),
            Failure::Store(error) => PassError::Store(error),
        }
    }
}

/// Builds the error of a batch that met a table whose schema or privileges changed since the
/// catalog was read. The client retries the batch, which then runs against the new catalog.
fn table_changed(message: &str) -> StoreError {
    tracing::error!(error = message, "an upload met a synced table that changed; the catalog is read again");
    StoreError::Unavailable(anyhow::anyhow!("a synced table changed: {message}"))
}

impl UploadTarget {
    /// Applies `batch` in one transaction with its rejections recorded in `upload_rejections`.
    ///
    /// The first pass runs every operation straight. When an operation fails on its values or a
    /// constraint, that pass is rolled back and the operation is rejected as `INVALID_VALUE`.
    /// The batch then runs again without it, with each operation under a savepoint, so a further
    /// bad operation is rejected on its own and costs no third pass. When the commit itself fails
    /// on a deferred constraint, every operation is rejected.
    ///
    /// # Errors
    /// `Unavailable` when the database cannot be reached or does not respond, or when a table the
    /// batch touches no longer fits `sync.tables`. Nothing is applied then.
    pub async fn apply(&self, batch: &Batch) -> Result<UploadOutcome, StoreError> {
        let catalog = self.catalog().await?;
        let paused: BTreeSet<&str> = batch
            .operations
            .iter()
            .map(|op| op.table.as_str())
            .chain(std::iter::once(REJECTIONS_TABLE))
            .filter(|table| catalog.broken.contains_key(*table))
            .collect();
        if !paused.is_empty() {
            let problems: Vec<&String> = paused.iter().flat_map(|table| &catalog.broken[*table]).collect();
            return Err(StoreError::Unavailable(anyhow::anyhow!("uploads are paused: {problems:?}")));
        }

        let mut failed: Vec<Rejection> = Vec::new();
        let mut commit_failed = false;
        loop {
            let isolated = !failed.is_empty();
            match self.pass(&catalog, batch, &failed, isolated).await {
                Ok(outcome) => return Ok(outcome),
                Err(PassError::Value { position, message }) => {
                    failed.push(Rejection::of(&batch.operations[position], RejectionCode::InvalidValue, message));
                }
                Err(PassError::Commit(message)) if !commit_failed => {
                    commit_failed = true;
                    let rejected: Vec<usize> = failed.iter().map(|rejection| rejection.index).collect();
                    let rest = batch.operations.iter().filter(|op| !rejected.contains(&op.index));
                    let message = format!("the batch could not commit: {message}");
                    failed.extend(rest.map(|op| Rejection::of(op, RejectionCode::InvalidValue, message.clone())));
                }
                Err(PassError::Commit(message)) => {
                    return Err(StoreError::Other(anyhow::anyhow!("the rejections could not commit: {message}")));
                }
                Err(PassError::Store(error)) => {
                    if matches!(error, StoreError::Unavailable(_)) {
                        self.forget_catalog().await;
                    }
                    return Err(error);
                }
            }
        }
    }

    /// Runs the batch once in a transaction, skipping the operations of `failed`.
    async fn pass(&self, catalog: &Catalog, batch: &Batch, failed: &[Rejection], isolated: bool) -> Result<UploadOutcome, PassError> {
        let mut transaction = self.run(self.pool.begin()).await?;
        let mut outcome = UploadOutcome { applied: 0, rejected: batch.rejected.iter().chain(failed).cloned().collect() };

        for (position, op) in batch.operations.iter().enumerate() {
            if failed.iter().any(|rejection| rejection.index == op.index) {
                continue;
            }
            let shape = catalog.tables.get(&op.table).ok_or_else(|| {
                PassError::Store(StoreError::Other(anyhow::anyhow!("table {} is missing from the catalog", op.table)))
            })?;
            if isolated {
                self.run(sqlx::query("SAVEPOINT upload_op").execute(&mut *transaction)).await?;
            }
            let result = match self.run(self.operation(&mut transaction, shape, op, &batch.user_id)).await {
                Err(Failure::Denied(message)) => Err(self.denied(&op.table, message).await),
                other => other,
            };
            match result {
                Ok(Applied::Done) => outcome.applied += 1,
                Ok(Applied::NotOwner) => {
                    outcome.rejected.push(Rejection::of(op, RejectionCode::NotOwner, "the row belongs to another user"));
                }
                Err(Failure::Value(message)) if isolated => {
                    self.run(sqlx::query("ROLLBACK TO SAVEPOINT upload_op").execute(&mut *transaction)).await?;
                    outcome.rejected.push(Rejection::of(op, RejectionCode::InvalidValue, message));
                }
                Err(Failure::Value(message)) => return Err(PassError::Value { position, message }),
                Err(failure) => return Err(failure.into()),
            }
            if isolated {
                self.run(sqlx::query("RELEASE SAVEPOINT upload_op").execute(&mut *transaction)).await?;
            }
        }

        outcome.rejected.sort_by_key(|rejection| rejection.index);
        self.run(self.record(&mut transaction, batch, &outcome.rejected)).await?;
        match self.run(transaction.commit()).await {
            Ok(()) => Ok(outcome),
            Err(Failure::Value(message)) => Err(PassError::Commit(message)),
            Err(failure) => Err(failure.into()),
        }
    }

    /// Sorts a refused statement: a rejection by row-level security when the table still has the
    /// privileges uploads need, else a pause of the table's uploads until an operator grants them.
    async fn denied(&self, table: &str, message: String) -> Failure {
        match self.still_permitted(table).await {
            Ok(true) => Failure::Value(message),
            Ok(false) => Failure::Store(StoreError::Unavailable(anyhow::anyhow!("uploads to table {table} are paused: {message}"))),
            Err(error) => Failure::Store(error),
        }
    }

    /// Awaits one statement within the step timeout and sorts its failure: a value or constraint
    /// error is the operation's, anything else stops the batch.
    async fn run<T>(&self, statement: impl std::future::Future<Output = Result<T, sqlx::Error>>) -> Result<T, Failure> {
        let result = self.step(async { Ok(statement.await) }).await.map_err(Failure::Store)?;
        result.map_err(classify)
    }

    async fn operation(&self, connection: &mut PgConnection, shape: &TableShape, op: &PlannedOp, user_id: &str) -> Result<Applied, sqlx::Error> {
        let table = format!("{}.{}", quote(&self.schema), quote(&op.table));
        let owner = quote(&self.owner_column);
        let id_cast = format!("CAST($1 AS {})", shape.type_of("id"));
        let owner_cast = format!("CAST($2 AS {})", shape.type_of(&self.owner_column));
        let casts: Vec<String> = op
            .values
            .iter()
            .enumerate()
            .map(|(position, (column, _))| format!("CAST(${} AS {})", position + 3, shape.type_of(column)))
            .collect();
        let columns: Vec<String> = op.values.iter().map(|(column, _)| quote(column)).collect();

        let sql = match op.kind {
            OpKind::Put => {
                let updates: Vec<String> = if columns.is_empty() {
                    vec![format!("{owner} = EXCLUDED.{owner}")]
                } else {
                    columns.iter().map(|column| format!("{column} = EXCLUDED.{column}")).collect()
                };
                format!(
                    "INSERT INTO {table} (\"id\", {owner}{}) VALUES ({id_cast}, {owner_cast}{}) \
                     ON CONFLICT (\"id\") DO UPDATE SET {} WHERE {table}.{owner} = EXCLUDED.{owner} RETURNING 1",
                    columns.iter().map(|column| format!(", {column}")).collect::<String>(),
                    casts.iter().map(|cast| format!(", {cast}")).collect::<String>(),
                    updates.join(", "),
                )
            }
            OpKind::Patch if columns.is_empty() => {
                format!("SELECT 1 FROM {table} WHERE \"id\" = {id_cast} AND {owner} = {owner_cast}")
            }
            OpKind::Patch => {
                let sets: Vec<String> = columns.iter().zip(&casts).map(|(column, cast)| format!("{column} = {cast}")).collect();
                format!("UPDATE {table} SET {} WHERE \"id\" = {id_cast} AND {owner} = {owner_cast} RETURNING 1", sets.join(", "))
            }
            OpKind::Delete => format!("DELETE FROM {table} WHERE \"id\" = {id_cast} AND {owner} = {owner_cast} RETURNING 1"),
        };

        let mut query = sqlx::query_scalar::<Postgres, i32>(&sql).bind(&op.id).bind(user_id);
        for (_, value) in &op.values {
            query = query.bind(value.as_deref());
        }
        if query.fetch_optional(&mut *connection).await?.is_some() {
            return Ok(Applied::Done);
        }
        if op.kind == OpKind::Put {
            return Ok(Applied::NotOwner);
        }
        // No row of the caller's: a missing row is success, so retries are harmless; a row of
        // another owner is reported.
        let exists = format!("SELECT 1 FROM {table} WHERE \"id\" = {id_cast}");
        let other: Option<i32> = sqlx::query_scalar::<Postgres, i32>(&exists).bind(&op.id).fetch_optional(&mut *connection).await?;
        Ok(if other.is_some() { Applied::NotOwner } else { Applied::Done })
    }

    /// Inserts the batch's rejections in one statement.
    async fn record(&self, connection: &mut PgConnection, batch: &Batch, rejected: &[Rejection]) -> Result<(), sqlx::Error> {
        if rejected.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "INSERT INTO {}.{REJECTIONS_TABLE} (id, user_id, device_id, op, type, row_id, code, message, created_at) \
             SELECT id, $2, $3, op, type, row_id, code, message, to_timestamp($9::float8 / 1000) \
             FROM UNNEST($1::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[]) \
                 AS r(id, op, type, row_id, code, message)",
            quote(&self.schema)
        );
        let texts = |pick: fn(&Rejection) -> Option<&str>| -> Vec<Option<String>> {
            rejected.iter().map(|rejection| pick(rejection).map(without_nul)).collect()
        };
        let ids: Vec<String> = rejected.iter().map(|_| random::new_id()).collect();
        sqlx::query(&sql)
            .bind(ids)
            .bind(&batch.user_id)
            .bind(&batch.device_id)
            .bind(texts(|r| r.op.as_deref()))
            .bind(texts(|r| r.table.as_deref()))
            .bind(texts(|r| r.id.as_deref()))
            .bind(texts(|r| Some(r.code.as_str())))
            .bind(texts(|r| Some(r.message.as_str())))
            .bind(batch.now.0)
            .execute(&mut *connection)
            .await?;
        Ok(())
    }
}

/// Sorts a statement's error by who can fix it.
///
/// The client's operation is rejected for data exceptions (class 22) and integrity violations
/// (class 23), a view's check option (44000) and an app trigger's exception (P0001). A refusal
/// (42501) is sorted further by the caller, since it comes from row-level security or from a
/// revoked privilege. Other errors of class 42, and 0A000, mean the table changed under the
/// catalog. The rest is the database's.
fn classify(error: sqlx::Error) -> Failure {
    let sqlx::Error::Database(database) = &error else { return Failure::Store(map_error(error)) };
    let Some(code) = database.code() else { return Failure::Store(map_error(error)) };
    let mut message = database.message().to_string();
    if let Some(detail) = database.try_downcast_ref::<PgDatabaseError>().and_then(PgDatabaseError::detail) {
        message = format!("{message} ({detail})");
    }
    let message: String = message.chars().take(MAX_MESSAGE_CHARS).collect();

    if code.starts_with("22") || code.starts_with("23") || matches!(code.as_ref(), "44000" | "P0001") {
        Failure::Value(message)
    } else if code == "42501" {
        Failure::Denied(message)
    } else if code.starts_with("42") || code == "0A000" {
        Failure::Schema(message)
    } else {
        Failure::Store(map_error(error))
    }
}

/// PostgreSQL text cannot hold NUL, which a client may send in an id.
fn without_nul(text: &str) -> String {
    text.replace('\0', "\u{fffd}")
}
