-- trilha schema, version 19: a delivery receipt is once per status per message the
-- platform knows (WhatsApp's wamid, `message_id`; '' when the channel gives none, as
-- `POST .../statuses` does). A message sent again (as its template after Meta's 131047
-- came in a status) is a second platform message under the same idempotency key: its
-- own `failed` is recorded, while Meta repeating a status of either is a duplicate.
CREATE TABLE delivery_receipts_new (
    id           INTEGER PRIMARY KEY,
    outbox_id    INTEGER NOT NULL REFERENCES outbox (id),
    status       TEXT    NOT NULL,
    at           REAL    NOT NULL,
    error        TEXT,
    received_at  REAL    NOT NULL,
    message_id   TEXT    NOT NULL DEFAULT '',
    UNIQUE (outbox_id, status, message_id)
);
INSERT INTO delivery_receipts_new (id, outbox_id, status, at, error, received_at)
    SELECT id, outbox_id, status, at, error, received_at FROM delivery_receipts;
DROP TABLE delivery_receipts;
ALTER TABLE delivery_receipts_new RENAME TO delivery_receipts;
