-- trilha schema, version 12 (PostgreSQL): SQLite's version 17. `reply_to` names the
-- contact's message a bot message answers (its message id: a WhatsApp wamid; NULL:
-- none), for channels that mark it read or quote it. A channel with a window (WhatsApp's
-- 24 hours) asks when the contact last wrote in a conversation: the index answers that
-- from its last entry instead of reading every message of the conversation.
ALTER TABLE outbox ADD COLUMN reply_to TEXT COLLATE "C";
CREATE INDEX inbox_conversation_received ON inbox (institution_id, conversation_id, received_at);
