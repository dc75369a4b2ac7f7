-- trilha schema, version 13 (PostgreSQL): SQLite's version 18. Channels' webhook bodies
-- (Meta's WhatsApp notifications), kept raw and verified before the webhook is answered,
-- then processed in the order they were stored by a leased background task (several
-- processes may share them). No institution: one body may speak for several numbers;
-- its messages are delivered to each number's institution when it is read. `progress`
-- counts the body's updates already handled, so a retry resumes where the last attempt
-- stopped.
CREATE TABLE channel_webhooks (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel          TEXT COLLATE "C" NOT NULL,
    body             BYTEA            NOT NULL,
    received_at      DOUBLE PRECISION NOT NULL,
    status           TEXT COLLATE "C" NOT NULL DEFAULT 'pending',
    attempts         INTEGER          NOT NULL DEFAULT 0,
    next_attempt_at  DOUBLE PRECISION NOT NULL,
    progress         INTEGER          NOT NULL DEFAULT 0,
    last_error       TEXT COLLATE "C",
    processed_at     DOUBLE PRECISION,
    lease_owner      TEXT COLLATE "C",
    lease_expires_at DOUBLE PRECISION
);
CREATE INDEX channel_webhooks_pending ON channel_webhooks (id) WHERE status = 'pending';
CREATE INDEX channel_webhooks_processed ON channel_webhooks (processed_at)
    WHERE status <> 'pending';
