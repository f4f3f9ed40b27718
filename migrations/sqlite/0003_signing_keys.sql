-- Keys that sign JWTs, one ring per purpose: 'general' for /token, 'sync' for the sync gateway.
-- A key signs from activates_at and stays published until retired_at, so tokens it signed keep
-- verifying during a rotation.
CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY NOT NULL,
    purpose TEXT NOT NULL CHECK (purpose IN ('general', 'sync')),
    alg TEXT NOT NULL,
    public_jwk TEXT NOT NULL,
    -- The private JWK, encrypted under a key derived from the secret.
    private_key TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    activates_at INTEGER NOT NULL,
    retired_at INTEGER
) STRICT;

CREATE INDEX signing_keys_purpose_idx ON signing_keys (purpose, activates_at);
