-- trilha schema, version 15 (PostgreSQL): SQLite's version 20. The conversations each
-- channel webhook body names (WhatsApp: `phone_number_id:wa_id` of its messages and of
-- its statuses' recipients), written with the body. A claim holds a body back while an
-- older body naming one of its conversations is still pending (under a lease, or
-- waiting for its retry), so a contact's bodies are processed in the order they were
-- stored; other contacts' bodies are not held back. A body kept before this version has
-- no keys: it holds nothing back.
CREATE TABLE channel_webhook_keys (
    webhook_id       BIGINT NOT NULL REFERENCES channel_webhooks (id) ON DELETE CASCADE,
    conversation_key TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (webhook_id, conversation_key)
);
CREATE INDEX channel_webhook_keys_key ON channel_webhook_keys (conversation_key, webhook_id);
