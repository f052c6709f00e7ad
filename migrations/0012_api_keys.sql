-- Managed API keys (connectra/api_keys.py; `connectra keys create|list|rotate|revoke`).
-- A secret is `cj_<key_id>_<random>`: the API finds the row by key_id, the visible part, and
-- compares the SHA-256 of the whole secret in constant time. Secrets are 256 random bits made
-- by `secrets.token_urlsafe`, so a fast hash is enough (no slow KDF: there is nothing to
-- guess). A revoked key keeps its row and its name, which its jobs name as their owner: a
-- new key can never take over an old key's jobs. The table is small: primary key or
-- api_keys_key_id_key.
CREATE TABLE api_keys (
    name          text        PRIMARY KEY,
    key_id        text        NOT NULL,
    secret_hash   bytea       NOT NULL,
    scope         text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    rotated_at    timestamptz,
    revoked_at    timestamptz,
    last_used_at  timestamptz,
    CONSTRAINT api_keys_key_id_key UNIQUE (key_id),
    CONSTRAINT api_keys_name_check
        CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$' AND name !~ '^env-'),
    CONSTRAINT api_keys_key_id_check CHECK (key_id ~ '^[0-9a-f]{12}$'),
    CONSTRAINT api_keys_secret_hash_check CHECK (octet_length(secret_hash) = 32),
    CONSTRAINT api_keys_scope_check CHECK (scope IN ('read', 'write', 'admin'))
);

-- The key that created a job through the API: a managed key's name, or env-1, env-2, ... for
-- the keys of API_KEYS; NULL for jobs made by the CLI, by Python dispatch or by a schedule.
-- A key without the admin scope sees and acts on only its own jobs, listed newest first
-- through this index; jobs created elsewhere (NULL) take no room in it.
ALTER TABLE jobs ADD COLUMN created_by text;
CREATE INDEX jobs_created_by_idx ON jobs (created_by, id DESC) WHERE created_by IS NOT NULL;
