-- trilha schema, version 14 (PostgreSQL): SQLite's version 19. A delivery receipt is
-- once per status per message the platform knows (WhatsApp's wamid, `message_id`; ''
-- when the channel gives none, as `POST .../statuses` does). A message sent again (as
-- its template after Meta's 131047 came in a status) is a second platform message under
-- the same idempotency key: its own `failed` is recorded, while Meta repeating a status
-- of either is a duplicate.
ALTER TABLE delivery_receipts ADD COLUMN message_id TEXT COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE delivery_receipts DROP CONSTRAINT delivery_receipts_outbox_id_status_key;
ALTER TABLE delivery_receipts ADD CONSTRAINT delivery_receipts_outbox_id_status_message_id_key
    UNIQUE (outbox_id, status, message_id);
