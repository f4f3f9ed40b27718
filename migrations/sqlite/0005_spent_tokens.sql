-- Bot-check tokens already claimed, by SHA-256; a token passes at most once, on any instance.
CREATE TABLE spent_tokens (
    hash TEXT PRIMARY KEY NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;

CREATE INDEX spent_tokens_expires_at_idx ON spent_tokens (expires_at);
