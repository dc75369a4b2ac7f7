-- trilha schema, version 3 (PostgreSQL): SQLite's version 8. Delivery receipts: the
-- channel reports what became of each outbound message (sent, delivered, read,
-- failed) by its idempotency key: every status once per message (a repeat is a
-- duplicate), and the furthest one on the outbox row, so the transcript and the
-- listing's undelivered count read one row.
ALTER TABLE outbox ADD COLUMN delivery_status TEXT COLLATE "C";
ALTER TABLE outbox ADD COLUMN delivery_at DOUBLE PRECISION;
ALTER TABLE outbox ADD COLUMN delivery_error TEXT COLLATE "C";

CREATE TABLE delivery_receipts (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    outbox_id    BIGINT           NOT NULL REFERENCES outbox (id),
    status       TEXT COLLATE "C" NOT NULL,
    at           DOUBLE PRECISION NOT NULL,
    error        TEXT COLLATE "C",
    received_at  DOUBLE PRECISION NOT NULL,
    UNIQUE (outbox_id, status)
);
