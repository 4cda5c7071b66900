-- The HTTP API (streams/api): per-tenant keys, the images created through it, and the
-- answers kept for Idempotency-Key. Portable SQL: PostgreSQL and SQLite.

-- Only the sha256 of a token is kept; the token itself is shown once, by `apikeys create`.
CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    hint        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
CREATE INDEX api_keys_tenant ON api_keys (tenant);

-- One row per image created through the API: who owns it, where its upload goes, what to
-- run. upload_event_id is the latest upload event emitted for it (a reprocess moves it),
-- first_event_id the original one (what a reprocess names in replay_of).
CREATE TABLE api_images (
    id                TEXT PRIMARY KEY,
    tenant            TEXT NOT NULL,
    bucket            TEXT NOT NULL,
    object_key        TEXT NOT NULL,
    pipeline          TEXT NOT NULL,
    preset            TEXT,
    callback_url      TEXT,
    created_at        BIGINT NOT NULL,
    upload_expires_at BIGINT,
    started_at        BIGINT,
    first_event_id    TEXT,
    upload_event_id   TEXT,
    emitted_at        BIGINT
);
CREATE INDEX api_images_tenant ON api_images (tenant, created_at);

-- Idempotency-Key: the request's hash and, once answered, the answer (kept 24 h). A row
-- without a status is a request in progress (or one whose process died: taken over later).
CREATE TABLE api_idempotency (
    tenant          TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_hash    TEXT NOT NULL,
    status_code     INTEGER,
    response        TEXT,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (tenant, idempotency_key)
);
CREATE INDEX api_idempotency_created ON api_idempotency (created_at);
