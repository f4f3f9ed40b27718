//! One-time codes, code sign-in with guest promotion, and the operator's user commands.

use sqlx::PgConnection;

use super::{insert_event, insert_session, insert_user, insert_user_row, map_error, PostgresStore, USER_COLUMNS};
use crate::core::events::OutboxEvent;
use crate::core::time::Millis;
use crate::store::{CodeAttempt, CodeSignIn, IssuedCode, NewCode, SignedIn, StoreError, UserRecord};

impl PostgresStore {
    pub async fn issue_code(&self, code: NewCode, max_attempts: u32) -> Result<IssuedCode, StoreError> {
        let mut transaction = self.begin().await?;
        // The row lock serializes concurrent sends for one identifier.
        let existing: Option<(String, i32, i64)> =
            sqlx::query_as("SELECT id, attempts, expires_at FROM verifications WHERE identifier = $1 FOR UPDATE")
                .bind(&code.identifier)
                .fetch_optional(&mut *transaction)
                .await
                .map_err(map_error)?;

        if let Some((id, attempts, expires_at)) = existing {
            if expires_at > code.created_at.0 {
                sqlx::query("UPDATE verifications SET value_hash = $1 WHERE id = $2")
                    .bind(&code.value_hash)
                    .bind(&id)
                    .execute(&mut *transaction)
                    .await
                    .map_err(map_error)?;
                transaction.commit().await.map_err(map_error)?;
                return Ok(IssuedCode { verification_id: id, burned: i64::from(attempts) >= i64::from(max_attempts) });
            }
            sqlx::query("DELETE FROM verifications WHERE id = $1")
                .bind(&id)
                .execute(&mut *transaction)
                .await
                .map_err(map_error)?;
        }

        sqlx::query(
            "INSERT INTO verifications (id, identifier, value_hash, attempts, expires_at, created_at) \
             VALUES ($1, $2, $3, 0, $4, $5)",
        )
        .bind(&code.id)
        .bind(&code.identifier)
        .bind(&code.value_hash)
        .bind(code.expires_at.0)
        .bind(code.created_at.0)
        .execute(&mut *transaction)
        .await
        .map_err(map_error)?;
        transaction.commit().await.map_err(map_error)?;
        Ok(IssuedCode { verification_id: code.id, burned: false })
    }

    pub async fn reserve_code_attempt(&self, identifier: &str, max_attempts: u32, now: Millis) -> Result<CodeAttempt, StoreError> {
        let max_attempts = i32::try_from(max_attempts).unwrap_or(i32::MAX);
        let reserved: Option<(String, String, i32)> = sqlx::query_as(
            "UPDATE verifications SET attempts = attempts + 1 \
             WHERE identifier = $1 AND expires_at > $2 AND attempts < $3 AND value_hash IS NOT NULL \
             RETURNING id, value_hash, attempts",
        )
        .bind(identifier)
        .bind(now.0)
        .bind(max_attempts)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_error)?;
        if let Some((verification_id, value_hash, attempts)) = reserved {
            let attempts = u32::try_from(attempts).unwrap_or(u32::MAX);
            return Ok(CodeAttempt::Reserved { verification_id, value_hash, attempts });
        }

        let row: Option<(String, i64)> =
            sqlx::query_as("SELECT id, expires_at FROM verifications WHERE identifier = $1 AND value_hash IS NOT NULL")
                .bind(identifier)
                .fetch_optional(&self.pool)
                .await
                .map_err(map_error)?;
        Ok(match row {
            None => CodeAttempt::Missing,
            Some((_, expires_at)) if expires_at <= now.0 => CodeAttempt::Expired,
            Some((verification_id, _)) => CodeAttempt::Burned { verification_id },
        })
    }

    pub async fn sign_in_with_code(&self, plan: CodeSignIn) -> Result<Option<SignedIn>, StoreError> {
        let mut transaction = self.begin().await?;
        let signed_in = sign_in_with_code(&mut transaction, plan).await?;
        if signed_in.is_some() {
            transaction.commit().await.map_err(map_error)?;
        }
        Ok(signed_in)
    }

    pub async fn list_users(&self, limit: u32) -> Result<Vec<UserRecord>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY created_at DESC, id LIMIT $1");
        sqlx::query_as(&sql).bind(i64::from(limit)).fetch_all(&self.pool).await.map_err(map_error)
    }

    pub async fn find_user(&self, user_id: &str) -> Result<Option<UserRecord>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        sqlx::query_as(&sql).bind(user_id).fetch_optional(&self.pool).await.map_err(map_error)
    }

    pub async fn create_user(&self, user: UserRecord) -> Result<(), StoreError> {
        let mut connection = self.pool.acquire().await.map_err(map_error)?;
        insert_user(&mut connection, &user).await
    }
}

async fn sign_in_with_code(connection: &mut PgConnection, plan: CodeSignIn) -> Result<Option<SignedIn>, StoreError> {
    let consumed: Option<String> = sqlx::query_scalar("DELETE FROM verifications WHERE id = $1 RETURNING id")
        .bind(&plan.verification_id)
        .fetch_optional(&mut *connection)
        .await
        .map_err(map_error)?;
    if consumed.is_none() {
        return Ok(None);
    }

    let now = plan.session.created_at;
    let user = find_or_create_user(connection, &plan.new_user).await?;
    let user = if user.email_verified {
        user
    } else {
        // Nothing attached before the owner proved the address survives its first proof.
        for statement in ["DELETE FROM sessions WHERE user_id = $1", "DELETE FROM accounts WHERE user_id = $1"] {
            sqlx::query(statement).bind(&user.id).execute(&mut *connection).await.map_err(map_error)?;
        }
        sqlx::query("UPDATE users SET email_verified = TRUE, updated_at = $1 WHERE id = $2")
            .bind(now.0)
            .bind(&user.id)
            .execute(&mut *connection)
            .await
            .map_err(map_error)?;
        UserRecord { email_verified: true, updated_at: now, ..user }
    };

    let mut session = plan.session;
    session.user_id = user.id.clone();
    insert_session(connection, &session).await?;

    let mut promoted = false;
    if let Some(guest_id) = plan.guest_id.filter(|guest_id| *guest_id != user.id) {
        let deleted: Option<String> = sqlx::query_scalar("DELETE FROM users WHERE id = $1 AND is_anonymous RETURNING id")
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

/// Returns the user with `new_user.email`, inserting `new_user` when there is none. A concurrent
/// insert of the same email makes the insert do nothing, and the select then finds that row.
async fn find_or_create_user(connection: &mut PgConnection, new_user: &UserRecord) -> Result<UserRecord, StoreError> {
    insert_user_row(connection, new_user, "ON CONFLICT (email) DO NOTHING").await?;

    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1 FOR UPDATE");
    sqlx::query_as(&sql).bind(&new_user.email).fetch_one(&mut *connection).await.map_err(map_error)
}
