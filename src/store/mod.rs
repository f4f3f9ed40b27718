//! Persistence: one method per use case, carried out atomically by the configured engine.
//!
//! `core` computes plan values (a new guest and its session, a refresh, a deletion) and hands them
//! here; no transaction crosses into `core`, so the SQLite writer can group concurrent plans into one
//! commit.

pub mod postgres;
pub mod sqlite;
pub mod upload;

use std::path::PathBuf;

use crate::config::DatabaseConfig;
use crate::core::events::OutboxEvent;
use crate::core::time::Millis;
use crate::core::token::TokenHash;

/// A user row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UserRecord {
    pub id: String,
    /// Lower-cased; a guest's is `<id, lower-cased>@anonymous.invalid`.
    pub email: String,
    pub email_verified: bool,
    pub name: String,
    pub image: Option<String>,
    pub is_anonymous: bool,
    #[sqlx(try_from = "i64")]
    pub created_at: Millis,
    #[sqlx(try_from = "i64")]
    pub updated_at: Millis,
}

/// A session row. The raw token is never stored, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SessionRecord {
    pub id: String,
    pub user_id: String,
    pub token_hash: String,
    #[sqlx(try_from = "i64")]
    pub expires_at: Millis,
    #[sqlx(try_from = "i64")]
    pub created_at: Millis,
    #[sqlx(try_from = "i64")]
    pub updated_at: Millis,
    /// The client address, or `""` when unknown.
    pub ip_address: String,
    /// The `User-Agent` header, or `""` when absent.
    pub user_agent: String,
}

/// A session joined with its user, as one row; column names of the user carry a `u_` prefix.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SessionUserRow {
    id: String,
    user_id: String,
    token_hash: String,
    expires_at: i64,
    created_at: i64,
    updated_at: i64,
    ip_address: String,
    user_agent: String,
    u_email: String,
    u_email_verified: bool,
    u_name: String,
    u_image: Option<String>,
    u_is_anonymous: bool,
    u_created_at: i64,
    u_updated_at: i64,
}

/// The select list that fills [`SessionUserRow`] from `sessions s JOIN users u`.
pub(crate) const SESSION_USER_COLUMNS: &str = "s.id, s.user_id, s.token_hash, s.expires_at, s.created_at, s.updated_at, \
     s.ip_address, s.user_agent, u.email AS u_email, u.email_verified AS u_email_verified, u.name AS u_name, \
     u.image AS u_image, u.is_anonymous AS u_is_anonymous, u.created_at AS u_created_at, u.updated_at AS u_updated_at";

impl SessionUserRow {
    pub(crate) fn into_records(self) -> (SessionRecord, UserRecord) {
        let user = UserRecord {
            id: self.user_id.clone(),
            email: self.u_email,
            email_verified: self.u_email_verified,
            name: self.u_name,
            image: self.u_image,
            is_anonymous: self.u_is_anonymous,
            created_at: Millis(self.u_created_at),
            updated_at: Millis(self.u_updated_at),
        };
        let session = SessionRecord {
            id: self.id,
            user_id: self.user_id,
            token_hash: self.token_hash,
            expires_at: Millis(self.expires_at),
            created_at: Millis(self.created_at),
            updated_at: Millis(self.updated_at),
            ip_address: self.ip_address,
            user_agent: self.user_agent,
        };
        (session, user)
    }
}

/// Changes to a user's profile; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserChanges {
    pub name: Option<String>,
    /// `Some(None)` clears the image.
    pub image: Option<Option<String>>,
    pub updated_at: Millis,
}

/// A JWT signing key row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct KeyRecord {
    pub kid: String,
    /// `general` or `sync`.
    pub purpose: String,
    pub alg: String,
    /// The public JWK as JSON text.
    pub public_jwk: String,
    /// The private key, encrypted under a key derived from the secret.
    pub private_key: String,
    #[sqlx(try_from = "i64")]
    pub created_at: Millis,
    /// The key signs from this instant on.
    #[sqlx(try_from = "i64")]
    pub activates_at: Millis,
    /// The key is no longer published after this instant.
    pub retired_at: Option<i64>,
}

/// A device registered by the sync gateway.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DeviceRecord {
    /// The client's `X-Device-ID`.
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub revoked_at: Option<i64>,
    pub last_seen: i64,
    pub created_at: i64,
}

/// The outcome of presenting a device to the sync gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceCheck {
    /// The device was new and is now registered to the user.
    Registered,
    /// The device was already the user's; its `last_seen` moved.
    Known,
    /// The device id belongs to another user.
    Taken,
    /// The device was revoked.
    Revoked,
    /// The user already has the maximum number of devices.
    LimitReached,
}

/// A new one-time code row.
#[derive(Debug, Clone)]
pub struct NewCode {
    pub id: String,
    pub identifier: String,
    /// HMAC of the identifier and the code; the code itself is never stored.
    pub value_hash: String,
    pub created_at: Millis,
    pub expires_at: Millis,
}

/// The code row after an issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCode {
    pub verification_id: String,
    /// True when the unexpired code of this identifier used up its tries: the new code replaced
    /// the hash but stays burned until the original expiry.
    pub burned: bool,
}

/// The outcome of reserving one try of an identifier's code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeAttempt {
    /// No code was issued, or it was used.
    Missing,
    /// The code expired.
    Expired,
    /// The code used up its tries and stays burned until it expires.
    Burned { verification_id: String },
    /// One try was counted; the caller compares the candidate with `value_hash`.
    Reserved { verification_id: String, value_hash: String, attempts: u32 },
}

/// The writes of a successful code sign-in, carried out in one transaction.
#[derive(Debug, Clone)]
pub struct CodeSignIn {
    /// The verification row, deleted so the code works once.
    pub verification_id: String,
    /// The user to insert when no user has this email; its email is the one signing in.
    pub new_user: UserRecord,
    /// The new session; the store sets its `user_id` to the user found or created.
    pub session: SessionRecord,
    /// The guest the request carried, deleted and recorded as promoted.
    pub guest_id: Option<String>,
    /// The sign-in method named in the `user.promoted` event.
    pub method: &'static str,
}

/// The result of a code sign-in.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub user: UserRecord,
    pub session: SessionRecord,
    /// True when this transaction deleted the guest and wrote `user.promoted`.
    pub promoted: bool,
}

/// The session of a user that a revocation names.
#[derive(Debug, Clone)]
pub enum SessionSelector {
    /// The session whose token has this hash.
    TokenHash(TokenHash),
    /// The session with this id, as the revocation handles of `list-sessions` carry it.
    Id(String),
}

/// Rows removed by one sweep.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepCounts {
    pub sessions: u64,
    pub verifications: u64,
}

/// Store failures, as the layers above need to tell them apart.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or is too busy right now; a retry may succeed.
    #[error("the database is unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// A unique value (such as an email) is taken.
    #[error("{0}")]
    Conflict(String),
    /// Anything else, which is a bug or a broken database.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// The store, dispatching each use case to its engine.
#[derive(Clone)]
pub enum Store {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PostgresStore),
}

macro_rules! dispatch {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            Store::Sqlite($store) => $call,
            Store::Postgres($store) => $call,
        }
    };
}

/// Runs a use case on the engine. PostgreSQL calls are bounded by a deadline, because a network
/// partition can leave a query waiting on a connection that never responds.
macro_rules! use_case {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            Store::Sqlite($store) => $call.await,
            Store::Postgres($store) => $store.bounded($call).await,
        }
    };
}

impl Store {
    /// Opens the database named by `database.url` without migrating it: `sqlite:` URLs select
    /// the SQLite store, `postgres:` and `postgresql:` URLs the PostgreSQL store.
    ///
    /// # Errors
    /// An unsupported URL scheme, or a database that cannot be opened.
    pub async fn open(config: &DatabaseConfig) -> anyhow::Result<Self> {
        match Engine::of(&config.url) {
            Some(Engine::Sqlite) => Ok(Store::Sqlite(sqlite::SqliteStore::open(config).await?)),
            Some(Engine::Postgres) => Ok(Store::Postgres(postgres::PostgresStore::open(config).await?)),
            None => anyhow::bail!(
                "database.url must start with sqlite: or postgres:, such as sqlite://doorman.db or \
                 postgres://doorman@db.example.com/doorman"
            ),
        }
    }

    /// The engine behind this store.
    pub fn engine(&self) -> Engine {
        match self {
            Store::Sqlite(_) => Engine::Sqlite,
            Store::Postgres(_) => Engine::Postgres,
        }
    }

    /// Applies the embedded migrations that the database lacks.
    ///
    /// # Errors
    /// A migration that fails, or a database whose applied migrations differ from the embedded ones.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        dispatch!(self, store => store.migrate().await)
    }

    /// Succeeds when the database responds and every embedded migration is applied.
    ///
    /// # Errors
    /// The reason the store is not ready.
    pub async fn ready(&self) -> anyhow::Result<()> {
        dispatch!(self, store => store.ready().await)
    }

    /// Finishes queued writes and closes every connection.
    pub async fn close(&self) {
        dispatch!(self, store => store.close().await)
    }

    /// Inserts a new guest user and its first session in one transaction.
    pub async fn create_guest(&self, user: UserRecord, session: SessionRecord) -> Result<(), StoreError> {
        use_case!(self, store => store.create_guest(user, session))
    }

    /// Finds a session by its token hash, with its user.
    pub async fn find_session(&self, hash: &TokenHash) -> Result<Option<(SessionRecord, UserRecord)>, StoreError> {
        use_case!(self, store => store.find_session(hash))
    }

    /// Moves a session's expiry; returns false when the session no longer exists.
    pub async fn extend_session(&self, session_id: &str, expires_at: Millis, now: Millis) -> Result<bool, StoreError> {
        use_case!(self, store => store.extend_session(session_id, expires_at, now))
    }

    /// Deletes one session by id; returns false when it did not exist.
    pub async fn delete_session(&self, session_id: &str) -> Result<bool, StoreError> {
        use_case!(self, store => store.delete_session(session_id))
    }

    /// Deletes one of a user's sessions; returns the deleted session's id, or `None` when the
    /// selector names no session of that user.
    pub async fn revoke_user_session(&self, user_id: &str, selector: SessionSelector) -> Result<Option<String>, StoreError> {
        use_case!(self, store => store.revoke_user_session(user_id, selector))
    }

    /// Lists a user's sessions that expire after `now`, oldest first.
    pub async fn list_sessions(&self, user_id: &str, now: Millis) -> Result<Vec<SessionRecord>, StoreError> {
        use_case!(self, store => store.list_sessions(user_id, now))
    }

    /// Deletes every session of a user except `keep`; returns how many were deleted.
    pub async fn delete_user_sessions(&self, user_id: &str, keep: Option<String>) -> Result<u64, StoreError> {
        use_case!(self, store => store.delete_user_sessions(user_id, keep))
    }

    /// Applies profile changes; returns false when the user no longer exists.
    pub async fn update_user(&self, user_id: &str, changes: UserChanges) -> Result<bool, StoreError> {
        use_case!(self, store => store.update_user(user_id, changes))
    }

    /// Deletes a user with its sessions and accounts; with `only_guest`, only when the user is a
    /// guest. When a row was deleted, writes `event` to the outbox in the same transaction.
    pub async fn delete_user(&self, user_id: &str, only_guest: bool, event: OutboxEvent) -> Result<bool, StoreError> {
        use_case!(self, store => store.delete_user(user_id, only_guest, event))
    }

    /// Stores a new code for `code.identifier`, replacing an unexpired one's hash but keeping its
    /// try count and expiry, so resending never resets the count.
    pub async fn issue_code(&self, code: NewCode, max_attempts: u32) -> Result<IssuedCode, StoreError> {
        use_case!(self, store => store.issue_code(code, max_attempts))
    }

    /// Counts one try of the identifier's code, unless it is missing, expired or burned after
    /// `max_attempts` tries.
    pub async fn reserve_code_attempt(&self, identifier: &str, max_attempts: u32, now: Millis) -> Result<CodeAttempt, StoreError> {
        use_case!(self, store => store.reserve_code_attempt(identifier, max_attempts, now))
    }

    /// Consumes the code and signs the email's user in (creating it when new, stripping an
    /// unverified one), and promotes the guest, in one transaction. `None` when the code was
    /// consumed meanwhile.
    pub async fn sign_in_with_code(&self, plan: CodeSignIn) -> Result<Option<SignedIn>, StoreError> {
        use_case!(self, store => store.sign_in_with_code(plan))
    }

    /// Lists the signing keys of a purpose (`general` or `sync`).
    pub async fn signing_keys(&self, purpose: &str) -> Result<Vec<KeyRecord>, StoreError> {
        use_case!(self, store => store.signing_keys(purpose))
    }

    /// Inserts `key` only when its purpose has no key yet, atomically across instances starting
    /// together; returns whether it was inserted.
    pub async fn create_first_key(&self, key: KeyRecord) -> Result<bool, StoreError> {
        use_case!(self, store => store.create_first_key(key))
    }

    /// Registers `device_id` to the user on first use, or checks that it is the user's and not
    /// revoked, in one transaction.
    pub async fn use_device(
        &self,
        user_id: &str,
        device_id: &str,
        name: &str,
        now: Millis,
        max_devices: u32,
    ) -> Result<DeviceCheck, StoreError> {
        use_case!(self, store => store.use_device(user_id, device_id, name, now, max_devices))
    }

    /// Lists devices, of one user or of all, newest first.
    pub async fn list_devices(&self, user_id: Option<&str>) -> Result<Vec<DeviceRecord>, StoreError> {
        use_case!(self, store => store.list_devices(user_id))
    }

    pub async fn find_device(&self, device_id: &str) -> Result<Option<DeviceRecord>, StoreError> {
        use_case!(self, store => store.find_device(device_id))
    }

    /// Marks a device revoked; returns false when it does not exist or was already revoked.
    pub async fn revoke_device(&self, device_id: &str, now: Millis) -> Result<bool, StoreError> {
        use_case!(self, store => store.revoke_device(device_id, now))
    }

    /// Adds `key` and schedules every live key of its purpose to retire at `retire_at`, in one
    /// transaction.
    pub async fn rotate_key(&self, key: KeyRecord, retire_at: Millis) -> Result<(), StoreError> {
        use_case!(self, store => store.rotate_key(key, retire_at))
    }

    /// Claims a bot-check token by its hash until `expires_at`; false when it is claimed already
    /// and that claim has not expired.
    pub async fn claim_token(&self, hash: &str, expires_at: Millis, now: Millis) -> Result<bool, StoreError> {
        use_case!(self, store => store.claim_token(hash, expires_at, now))
    }

    /// Releases a claim, after the provider could not be asked.
    pub async fn release_token(&self, hash: &str) -> Result<(), StoreError> {
        use_case!(self, store => store.release_token(hash))
    }

    /// Lists up to `limit` users, newest first.
    pub async fn list_users(&self, limit: u32) -> Result<Vec<UserRecord>, StoreError> {
        use_case!(self, store => store.list_users(limit))
    }

    pub async fn find_user(&self, user_id: &str) -> Result<Option<UserRecord>, StoreError> {
        use_case!(self, store => store.find_user(user_id))
    }

    /// Inserts a user; `Conflict` when the email is taken.
    pub async fn create_user(&self, user: UserRecord) -> Result<(), StoreError> {
        use_case!(self, store => store.create_user(user))
    }

    /// Deletes sessions and verifications that expired before `now`.
    pub async fn sweep_expired(&self, now: Millis) -> Result<SweepCounts, StoreError> {
        use_case!(self, store => store.sweep_expired(now))
    }
}

/// Succeeds when every migration of `migrator` is among `applied`. Versions a newer release
/// applied are fine, so readiness holds during a rollout.
fn check_migrations_applied(migrator: &sqlx::migrate::Migrator, applied: &[i64]) -> anyhow::Result<()> {
    let missing: Vec<i64> = migrator
        .iter()
        .map(|migration| migration.version)
        .filter(|version| !applied.contains(version))
        .collect();
    anyhow::ensure!(missing.is_empty(), "migrations {missing:?} are not applied: run `doorman migrate`");
    Ok(())
}

/// A database engine Doorman can store its data in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    /// The engine a `database.url` names by its scheme, if any.
    pub fn of(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Engine::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Engine::Postgres)
        } else {
            None
        }
    }
}

/// The file path of a `sqlite:` URL, or `None` for another scheme or an in-memory database.
pub fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_file_reads_relative_and_absolute_paths() {
        assert_eq!(sqlite_file("sqlite://doorman.db"), Some(PathBuf::from("doorman.db")));
        assert_eq!(sqlite_file("sqlite:///var/lib/doorman.db?mode=rwc"), Some(PathBuf::from("/var/lib/doorman.db")));
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("postgres://localhost/doorman"), None);
    }
}
