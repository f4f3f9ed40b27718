-- Users, their sessions, and one-time verification values. Times are Unix milliseconds (UTC),
-- as in the SQLite schema, so both stores share their record types.

-- Guests have is_anonymous = TRUE and the email '<id, lower-cased>@anonymous.invalid'.
CREATE TABLE users (
    id TEXT PRIMARY KEY NOT NULL,
    email TEXT NOT NULL UNIQUE,
    email_verified BOOLEAN NOT NULL DEFAULT FALSE,
    name TEXT NOT NULL,
    image TEXT,
    is_anonymous BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Pruning looks for old guests.
CREATE INDEX users_is_anonymous_created_at_idx ON users (is_anonymous, created_at);

-- Only the SHA-256 of a session token is stored, so a leaked table grants nothing.
CREATE TABLE sessions (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    ip_address TEXT NOT NULL DEFAULT '',
    user_agent TEXT NOT NULL DEFAULT ''
);

CREATE INDEX sessions_user_id_idx ON sessions (user_id);
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);

-- One-time codes (value_hash) and OAuth state (payload); one row per identifier.
CREATE TABLE verifications (
    id TEXT PRIMARY KEY NOT NULL,
    identifier TEXT NOT NULL UNIQUE,
    value_hash TEXT,
    payload TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE INDEX verifications_expires_at_idx ON verifications (expires_at);
