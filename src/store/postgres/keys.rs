//! Signing keys and spent bot-check tokens.

use super::{map_error, PostgresStore};
use crate::core::time::Millis;
use crate::store::{KeyRecord, StoreError};

const KEY_COLUMNS: &str = "kid, purpose, alg, public_jwk, private_key, created_at, activates_at, retired_at";

/// Advisory lock key that serializes the first-key check of instances starting together.
const FIRST_KEY_LOCK: i64 = 0x646f_6f72_6b65_7973;

/// Binds the seven columns of a new key row, in `KEY_COLUMNS` order without `retired_at`.
fn bind_key<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    key: &'q KeyRecord,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    query
        .bind(&key.kid)
        .bind(&key.purpose)
        .bind(&key.alg)
        .bind(&key.public_jwk)
        .bind(&key.private_key)
        .bind(key.created_at.0)
        .bind(key.activates_at.0)
}

impl PostgresStore {
    pub async fn signing_keys(&self, purpose: &str) -> Result<Vec<KeyRecord>, StoreError> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM signing_keys WHERE purpose = $1 ORDER BY activates_at, created_at");
        sqlx::query_as(&sql).bind(purpose).fetch_all(&self.pool).await.map_err(map_error)
    }

    pub async fn rotate_key(&self, key: KeyRecord, retire_at: Millis) -> Result<(), StoreError> {
        let mut transaction = self.begin().await?;
        sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE purpose = $2 AND retired_at IS NULL")
            .bind(retire_at.0)
            .bind(&key.purpose)
            .execute(&mut *transaction)
            .await
            .map_err(map_error)?;
        let sql = format!("INSERT INTO signing_keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)");
        bind_key(sqlx::query(&sql), &key)
            .execute(&mut *transaction)
            .await
            .map_err(map_error)?;
        transaction.commit().await.map_err(map_error)
    }

    pub async fn create_first_key(&self, key: KeyRecord) -> Result<bool, StoreError> {
        let mut transaction = self.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(FIRST_KEY_LOCK)
            .execute(&mut *transaction)
            .await
            .map_err(map_error)?;
        let sql = format!(
            "INSERT INTO signing_keys ({KEY_COLUMNS}) SELECT $1, $2, $3, $4, $5, $6, $7, NULL \
             WHERE NOT EXISTS (SELECT 1 FROM signing_keys WHERE purpose = $2)"
        );
        let result = bind_key(sqlx::query(&sql), &key)
            .execute(&mut *transaction)
            .await
            .map_err(map_error)?;
        transaction.commit().await.map_err(map_error)?;
        Ok(result.rows_affected() == 1)
    }
}

impl PostgresStore {
    pub async fn claim_token(&self, hash: &str, expires_at: Millis, now: Millis) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "INSERT INTO spent_tokens (hash, expires_at) VALUES ($1, $2) \
             ON CONFLICT (hash) DO UPDATE SET expires_at = excluded.expires_at WHERE spent_tokens.expires_at <= $3",
        )
        .bind(hash)
        .bind(expires_at.0)
        .bind(now.0)
        .execute(&self.pool)
        .await
        .map_err(map_error)?;
        Ok(result.rows_affected() == 1)
    }

    pub async fn release_token(&self, hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM spent_tokens WHERE hash = $1").bind(hash).execute(&self.pool).await.map_err(map_error)?;
        Ok(())
    }
}
