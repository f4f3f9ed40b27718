-- Accounts link a user to a sign-in provider; the outbox carries events written in the same
-- transaction as the change they describe.

CREATE TABLE accounts (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider_id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    -- Provider tokens, encrypted; NULL when the provider gave none.
    tokens TEXT,
    created_at BIGINT NOT NULL,
    UNIQUE (provider_id, account_id)
);

CREATE INDEX accounts_user_id_idx ON accounts (user_id);

-- kind is the event name (user.promoted, user.deleted); payload is its JSON body.
CREATE TABLE outbox (
    id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    delivered_at BIGINT,
    last_error TEXT
);

CREATE INDEX outbox_pending_idx ON outbox (delivered_at, next_attempt_at);
