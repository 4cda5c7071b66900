-- Final state per image, and the webhook outbox. Portable SQL: PostgreSQL and SQLite.
CREATE TABLE results (
    image_id        TEXT PRIMARY KEY,
    upload_event_id TEXT NOT NULL,
    final_event_id  TEXT NOT NULL UNIQUE,
    status          TEXT NOT NULL CHECK (status IN ('completed', 'failed')),
    error_code      TEXT,
    message         TEXT,
    retryable       BOOLEAN,
    failed_step     TEXT,
    outputs         TEXT NOT NULL,
    timings         TEXT NOT NULL,
    tenant          TEXT,
    bucket          TEXT NOT NULL,
    source_key      TEXT NOT NULL,
    submitted_at    BIGINT NOT NULL,
    finished_at     BIGINT NOT NULL,
    recorded_at     BIGINT NOT NULL
);

CREATE TABLE webhook_subscriptions (
    id              TEXT PRIMARY KEY,
    tenant          TEXT NOT NULL,
    url             TEXT NOT NULL,
    secret          TEXT NOT NULL,
    event_types     TEXT NOT NULL,
    active          BOOLEAN NOT NULL,
    disabled_reason TEXT,
    created_at      BIGINT NOT NULL
);
CREATE INDEX webhook_subscriptions_tenant ON webhook_subscriptions (tenant, active);

CREATE TABLE webhook_deliveries (
    webhook_id       TEXT NOT NULL,
    target           TEXT NOT NULL,
    url              TEXT NOT NULL,
    image_id         TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    payload          TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'exhausted', 'disabled')),
    attempts         INTEGER NOT NULL,
    next_attempt_at  BIGINT NOT NULL,
    last_status_code INTEGER,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    delivered_at     BIGINT,
    PRIMARY KEY (webhook_id, target)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_image ON webhook_deliveries (image_id);
