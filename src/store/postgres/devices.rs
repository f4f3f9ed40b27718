//! Devices of the sync gateway.

use super::{map_error, PostgresStore};
use crate::core::time::Millis;
use crate::store::{DeviceCheck, DeviceRecord, StoreError};

const DEVICE_COLUMNS: &str = "id, user_id, name, revoked_at, last_seen, created_at";

impl PostgresStore {
    pub async fn use_device(
        &self,
        user_id: &str,
        device_id: &str,
        name: &str,
        now: Millis,
        max_devices: u32,
    ) -> Result<DeviceCheck, StoreError> {
        let mut transaction = self.begin().await?;
        // Locking the user row serializes registrations of one user, so the count stays exact.
        sqlx::query("SELECT id FROM users WHERE id = $1 FOR UPDATE")
            .bind(user_id)
            .execute(&mut *transaction)
            .await
            .map_err(map_error)?;
        let existing: Option<(String, Option<i64>)> =
            sqlx::query_as("SELECT user_id, revoked_at FROM devices WHERE id = $1 FOR UPDATE")
                .bind(device_id)
                .fetch_optional(&mut *transaction)
                .await
                .map_err(map_error)?;
        let check = match existing {
            Some((owner, _)) if owner != user_id => DeviceCheck::Taken,
            Some((_, Some(_))) => DeviceCheck::Revoked,
            Some(_) => {
                sqlx::query("UPDATE devices SET last_seen = $1 WHERE id = $2")
                    .bind(now.0)
                    .bind(device_id)
                    .execute(&mut *transaction)
                    .await
                    .map_err(map_error)?;
                DeviceCheck::Known
            }
            None => {
                let active: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM devices WHERE user_id = $1 AND revoked_at IS NULL")
                    .bind(user_id)
                    .fetch_one(&mut *transaction)
                    .await
                    .map_err(map_error)?;
                if active >= i64::from(max_devices) {
                    DeviceCheck::LimitReached
                } else {
                    sqlx::query("INSERT INTO devices (id, user_id, name, last_seen, created_at) VALUES ($1, $2, $3, $4, $5)")
                        .bind(device_id)
                        .bind(user_id)
                        .bind(name)
                        .bind(now.0)
                        .bind(now.0)
                        .execute(&mut *transaction)
                        .await
                        .map_err(map_error)?;
                    DeviceCheck::Registered
                }
            }
        };
        transaction.commit().await.map_err(map_error)?;
        Ok(check)
    }

    pub async fn list_devices(&self, user_id: Option<&str>) -> Result<Vec<DeviceRecord>, StoreError> {
        let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE $1::text IS NULL OR user_id = $1 ORDER BY created_at DESC, id");
        sqlx::query_as(&sql).bind(user_id).fetch_all(&self.pool).await.map_err(map_error)
    }

    pub async fn find_device(&self, device_id: &str) -> Result<Option<DeviceRecord>, StoreError> {
        let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE id = $1");
        sqlx::query_as(&sql).bind(device_id).fetch_optional(&self.pool).await.map_err(map_error)
    }

    pub async fn revoke_device(&self, device_id: &str, now: Millis) -> Result<bool, StoreError> {
        let result = sqlx::query("UPDATE devices SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now.0)
            .bind(device_id)
            .execute(&self.pool)
            .await
            .map_err(map_error)?;
        Ok(result.rows_affected() == 1)
    }
}
