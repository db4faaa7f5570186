CREATE TABLE api_keys (
    id         text PRIMARY KEY,
    name       text        NOT NULL,
    prefix     text        NOT NULL UNIQUE,
    key_hash   text        NOT NULL,
    roles      text[]      NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL,
    revoked_at timestamptz
);
