-- trilha schema, version 18: channels' webhook bodies (Meta's WhatsApp notifications),
-- kept raw and verified before the webhook is answered, then processed in the order
-- they were stored by a leased background task (several processes may share them).
-- No institution: one body may speak for several numbers; its messages are delivered
-- to each number's institution when it is read. `progress` counts the body's updates
-- already handled, so a retry resumes where the last attempt stopped.
CREATE TABLE channel_webhooks (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    channel          TEXT    NOT NULL,
    body             BLOB    NOT NULL,
    received_at      REAL    NOT NULL,
    status           TEXT    NOT NULL DEFAULT 'pending',
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  REAL    NOT NULL,
    progress         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    processed_at     REAL,
    lease_owner      TEXT,
    lease_expires_at REAL
);
CREATE INDEX channel_webhooks_pending ON channel_webhooks (id) WHERE status = 'pending';
CREATE INDEX channel_webhooks_processed ON channel_webhooks (processed_at)
    WHERE status <> 'pending';
