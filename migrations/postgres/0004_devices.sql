-- Devices registered by the sync gateway's token route, named by the client's X-Device-ID. A device
-- belongs to one user; a revoked device gets no sync token until an operator deletes it.
CREATE TABLE devices (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    revoked_at BIGINT,
    last_seen BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE INDEX devices_user_id_idx ON devices (user_id);
