-- trilha schema, version 8: delivery receipts. The channel reports what became of
-- each outbound message (sent, delivered, read, failed) by its idempotency key: every
-- status once per message (a repeat is a duplicate), and the furthest one on the
-- outbox row, so the transcript and the listing's undelivered count read one row.
ALTER TABLE outbox ADD COLUMN delivery_status TEXT;
ALTER TABLE outbox ADD COLUMN delivery_at REAL;
ALTER TABLE outbox ADD COLUMN delivery_error TEXT;

CREATE TABLE delivery_receipts (
    id           INTEGER PRIMARY KEY,
    outbox_id    INTEGER NOT NULL REFERENCES outbox (id),
    status       TEXT    NOT NULL,
    at           REAL    NOT NULL,
    error        TEXT,
    received_at  REAL    NOT NULL,
    UNIQUE (outbox_id, status)
);
