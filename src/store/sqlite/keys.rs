//! Signing keys and spent bot-check tokens.

use super::{map_error, SqliteStore};
use crate::core::time::Millis;
use crate::store::{KeyRecord, StoreError};

const KEY_COLUMNS: &str = "kid, purpose, alg, public_jwk, private_key, created_at, activates_at, retired_at";

/// Binds the seven columns of a new key row, in `KEY_COLUMNS` order without `retired_at`.
fn bind_key<'q>(
    query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    key: &'q KeyRecord,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    query
        .bind(&key.kid)
        .bind(&key.purpose)
        .bind(&key.alg)
        .bind(&key.public_jwk)
        .bind(&key.private_key)
        .bind(key.created_at.0)
        .bind(key.activates_at.0)
}

impl SqliteStore {
    pub async fn signing_keys(&self, purpose: &str) -> Result<Vec<KeyRecord>, StoreError> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM signing_keys WHERE purpose = ? ORDER BY activates_at, created_at");
        sqlx::query_as(&sql).bind(purpose).fetch_all(&self.readers).await.map_err(map_error)
    }

    pub async fn rotate_key(&self, key: KeyRecord, retire_at: Millis) -> Result<(), StoreError> {
        self.writer
            .write(move |connection| {
                Box::pin(async move {
                    sqlx::query("UPDATE signing_keys SET retired_at = ? WHERE purpose = ? AND retired_at IS NULL")
                        .bind(retire_at.0)
                        .bind(&key.purpose)
                        .execute(&mut *connection)
                        .await
                        .map_err(map_error)?;
                    let sql = format!("INSERT INTO signing_keys ({KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, NULL)");
                    bind_key(sqlx::query(&sql), &key)
                        .execute(&mut *connection)
                        .await
                        .map_err(map_error)?;
                    Ok(())
                })
            })
            .await
    }

    pub async fn create_first_key(&self, key: KeyRecord) -> Result<bool, StoreError> {
        self.writer
            .write(move |connection| {
                Box::pin(async move {
                    // The writer's BEGIN IMMEDIATE holds the database write lock, so the check and the
                    // insert cannot interleave with another process's.
                    let sql = format!(
                        "INSERT INTO signing_keys ({KEY_COLUMNS}) SELECT ?, ?, ?, ?, ?, ?, ?, NULL \
                         WHERE NOT EXISTS (SELECT 1 FROM signing_keys WHERE purpose = ?)"
                    );
                    let result = bind_key(sqlx::query(&sql), &key)
                        .bind(&key.purpose)
                        .execute(&mut *connection)
                        .await
                        .map_err(map_error)?;
                    Ok(result.rows_affected() == 1)
                })
            })
            .await
    }
}

impl SqliteStore {
    pub async fn claim_token(&self, hash: &str, expires_at: Millis, now: Millis) -> Result<bool, StoreError> {
        let hash = hash.to_string();
        self.writer
            .write(move |connection| {
                Box::pin(async move {
                    let result = sqlx::query(
                        "INSERT INTO spent_tokens (hash, expires_at) VALUES (?, ?) \
                         ON CONFLICT (hash) DO UPDATE SET expires_at = excluded.expires_at WHERE spent_tokens.expires_at <= ?",
                    )
                    .bind(&hash)
                    .bind(expires_at.0)
                    .bind(now.0)
                    .execute(&mut *connection)
                    .await
                    .map_err(map_error)?;
                    Ok(result.rows_affected() == 1)
                })
            })
            .await
    }

    pub async fn release_token(&self, hash: &str) -> Result<(), StoreError> {
        let hash = hash.to_string();
        self.writer
            .write(move |connection| {
                Box::pin(async move {
                    sqlx::query("DELETE FROM spent_tokens WHERE hash = ?").bind(&hash).execute(&mut *connection).await.map_err(map_error)?;
                    Ok(())
                })
            })
            .await
    }
}
