//! One-time codes, code sign-in with guest promotion, and the operator's user commands.

use sqlx::SqliteConnection;

use super::{insert_event, insert_session, insert_user, map_error, SqliteStore, USER_COLUMNS};
use crate::core::events::OutboxEvent;
use crate::core::time::Millis;
use crate::store::{CodeAttempt, CodeSignIn, IssuedCode, NewCode, SignedIn, StoreError, UserRecord};

impl SqliteStore {
    pub async fn issue_code(&self, code: NewCode, max_attempts: u32) -> Result<IssuedCode, StoreError> {
        self.writer
            .write(move |connection| {
                Box::pin(async move {
                    let existing: Option<(String, i64, i64)> =
                        sqlx::query_as("SELECT id, attempts, expires_at FROM verifications WHERE identifier = ?")
                            .bind(&code.identifier)
                            .fetch_optional(&mut *connection)
                            .await
                            .map_err(map_error)?;

                    if let Some((id, attempts, expires_at)) = existing {
                        if expires_at > code.created_at.0 {
                            sqlx::query("UPDATE verifications SET value_hash = ? WHERE id = ?")
                                .bind(&code.value_hash)
                                .bind(&id)
                                .execute(&mut *connection)
                                .await
                                .map_err(map_error)?;
                            return Ok(IssuedCode { verification_id: id, burned: attempts >= i64::from(max_attempts) });
                        }
                        sqlx::query("DELETE FROM verifications WHERE id = ?")
                            .bind(&id)
                            .execute(&mut *connection)
                            .await
                            .map_err(map_error)?;
                    }

                    sqlx::query(
                        "INSERT INTO verifications (id, identifier, value_hash, attempts, expires_at, created_at) \
                         VALUES (?, ?, ?, 0, ?, ?)",
                    )
                    .bind(&code.id)
                    .bind(&code.identifier)
                    .bind(&code.value_hash)
                    .bind(code.expires_at.0)
                    .bind(code.created_at.0)
                    .execute(&mut *connection)
                    .await
                    .map_err(map_error)?;
                    Ok(IssuedCode { verification_id: code.id, burned: false })
                })
            })
            .await
    }

    pub async fn reserve_code_attempt(&self, identifier: &str, max_attempts: u32, now: Millis) -> Result<CodeAttempt, StoreError> {
        let identifier = identifier.to_string();
        self.writer
            .write(move |connection| {
                Box::pin(async move {
                    let reserved: Option<(String, String, i64)> = sqlx::query_as(
                        "UPDATE verifications SET attempts = attempts + 1 \
                         WHERE identifier = ? AND expires_at > ? AND attempts < ? AND value_hash IS NOT NULL \
                         RETURNING id, value_hash, attempts",
                    )
                    .bind(&identifier)
                    .bind(now.0)
                    .bind(i64::from(max_attempts))
                    .fetch_optional(&mut *connection)
                    .await
                    .map_err(map_error)?;
                    if let Some((verification_id, value_hash, attempts)) = reserved {
                        let attempts = u32::try_from(attempts).unwrap_or(u32::MAX);
                        return Ok(CodeAttempt::Reserved { verification_id, value_hash, attempts });
                    }

                    let row: Option<(String, i64)> =
                        sqlx::query_as("SELECT id, expires_at FROM verifications WHERE identifier = ? AND value_hash IS NOT NULL")
                            .bind(&identifier)
                            .fetch_optional(&mut *connection)
                            .await
                            .map_err(map_error)?;
                    Ok(match row {
                        None => CodeAttempt::Missing,
                        Some((_, expires_at)) if expires_at <= now.0 => CodeAttempt::Expired,
                        Some((verification_id, _)) => CodeAttempt::Burned { verification_id },
                    })
                })
            })
            .await
    }

    pub async fn sign_in_with_code(&self, plan: CodeSignIn) -> Result<Option<SignedIn>, StoreError> {
        self.writer
            .write(move |connection| Box::pin(async move { sign_in_with_code(connection, plan).await }))
            .await
    }

    pub async fn list_users(&self, limit: u32) -> Result<Vec<UserRecord>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY created_at DESC, id LIMIT ?");
        sqlx::query_as(&sql).bind(i64::from(limit)).fetch_all(&self.readers).await.map_err(map_error)
    }

    pub async fn find_user(&self, user_id: &str) -> Result<Option<UserRecord>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?");
        sqlx::query_as(&sql).bind(user_id).fetch_optional(&self.readers).await.map_err(map_error)
    }

    pub async fn create_user(&self, user: UserRecord) -> Result<(), StoreError> {
        self.writer.write(move |connection| Box::pin(async move { insert_user(connection, &user).await })).await
    }
}

async fn sign_in_with_code(connection: &mut SqliteConnection, plan: CodeSignIn) -> Result<Option<SignedIn>, StoreError> {
    let consumed: Option<String> = sqlx::query_scalar("DELETE FROM verifications WHERE id = ? RETURNING id")
        .bind(&plan.verification_id)
        .fetch_optional(&mut *connection)
        .await
        .map_err(map_error)?;
    if consumed.is_none() {
        return Ok(None);
    }

    let now = plan.session.created_at;
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE email = ?");
    let existing: Option<UserRecord> =
        sqlx::query_as(&sql).bind(&plan.new_user.email).fetch_optional(&mut *connection).await.map_err(map_error)?;
    let user = match existing {
        Some(mut user) => {
            if !user.email_verified {
                // Nothing attached before the owner proved the address survives its first proof.
                for statement in ["DELETE FROM sessions WHERE user_id = ?", "DELETE FROM accounts WHERE user_id = ?"] {
                    sqlx::query(statement).bind(&user.id).execute(&mut *connection).await.map_err(map_error)?;
                }
                sqlx::query("UPDATE users SET email_verified = 1, updated_at = ? WHERE id = ?")
                    .bind(now.0)
                    .bind(&user.id)
                    .execute(&mut *connection)
                    .await
                    .map_err(map_error)?;
                user.email_verified = true;
                user.updated_at = now;
            }
            user
        }
        None => {
            insert_user(connection, &plan.new_user).await?;
            plan.new_user.clone()
        }
    };

    let mut session = plan.session;
    session.user_id = user.id.clone();
    insert_session(connection, &session).await?;

    let mut promoted = false;
    if let Some(guest_id) = plan.guest_id.filter(|guest_id| *guest_id != user.id) {
        let deleted: Option<String> = sqlx::query_scalar("DELETE FROM users WHERE id = ? AND is_anonymous = 1 RETURNING id")
            .bind(&guest_id)
            .fetch_optional(&mut *connection)
            .await
            .map_err(map_error)?;
        if deleted.is_some() {
            insert_event(connection, &OutboxEvent::user_promoted(&guest_id, &user.id, plan.method, now)).await?;
            promoted = true;
        }
    }

    Ok(Some(SignedIn { user, session, promoted }))
}
