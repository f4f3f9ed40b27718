//! Devices of the sync gateway.

use super::{map_error, SqliteStore};
use crate::core::time::Millis;
use crate::store::{DeviceCheck, DeviceRecord, StoreError};

const DEVICE_COLUMNS: &str = "id, user_id, name, revoked_at, last_seen, created_at";

impl SqliteStore {
    pub async fn use_device(
        &self,
        user_id: &str,
        device_id: &str,
        name: &str,
        now: Millis,
        max_devices: u32,
    ) -> Result<DeviceCheck, StoreError> {
        let (user_id, device_id, name) = (user_id.to_string(), device_id.to_string(), name.to_string());
        self.writer
            .write(move |connection| {
                Box::pin(async move {
                    let existing: Option<(String, Option<i64>)> =
                        sqlx::query_as("SELECT user_id, revoked_at FROM devices WHERE id = ?")
                            .bind(&device_id)
                            .fetch_optional(&mut *connection)
                            .await
                            .map_err(map_error)?;
                    match existing {
                        Some((owner, _)) if owner != user_id => return Ok(DeviceCheck::Taken),
                        Some((_, Some(_))) => return Ok(DeviceCheck::Revoked),
                        Some(_) => {
                            sqlx::query("UPDATE devices SET last_seen = ? WHERE id = ?")
                                .bind(now.0)
                                .bind(&device_id)
                                .execute(&mut *connection)
                                .await
                                .map_err(map_error)?;
                            return Ok(DeviceCheck::Known);
                        }
                        None => {}
                    }

                    let active: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM devices WHERE user_id = ? AND revoked_at IS NULL")
                        .bind(&user_id)
                        .fetch_one(&mut *connection)
                        .await
                        .map_err(map_error)?;
                    if active >= i64::from(max_devices) {
                        return Ok(DeviceCheck::LimitReached);
                    }
                    sqlx::query("INSERT INTO devices (id, user_id, name, last_seen, created_at) VALUES (?, ?, ?, ?, ?)")
                        .bind(&device_id)
                        .bind(&user_id)
                        .bind(&name)
                        .bind(now.0)
                        .bind(now.0)
                        .execute(&mut *connection)
                        .await
                        .map_err(map_error)?;
                    Ok(DeviceCheck::Registered)
                })
            })
            .await
    }

    pub async fn list_devices(&self, user_id: Option<&str>) -> Result<Vec<DeviceRecord>, StoreError> {
        let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE ? IS NULL OR user_id = ? ORDER BY created_at DESC, id");
        sqlx::query_as(&sql).bind(user_id).bind(user_id).fetch_all(&self.readers).await.map_err(map_error)
    }

    pub async fn find_device(&self, device_id: &str) -> Result<Option<DeviceRecord>, StoreError> {
        let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE id = ?");
        sqlx::query_as(&sql).bind(device_id).fetch_optional(&self.readers).await.map_err(map_error)
    }

    pub async fn revoke_device(&self, device_id: &str, now: Millis) -> Result<bool, StoreError> {
        let (device_id, now) = (device_id.to_string(), now.0);
        self.writer
            .write(move |connection| {
                Box::pin(async move {
                    let result = sqlx::query("UPDATE devices SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
                        .bind(now)
                        .bind(&device_id)
                        .execute(&mut *connection)
                        .await
                        .map_err(map_error)?;
                    Ok(result.rows_affected() == 1)
                })
            })
            .await
    }
}
