-- trilha schema, version 11: a person takes a conversation over and hands it back.
-- A handoff is `end` (the execution ended) or `wait` (a person holds the conversation);
-- a person's message goes out through the outbox with its `agent_id`, once per
-- `agent_message_id` (the platform's id) in the conversation; a contact's message said
-- while a person held the conversation is marked `held_at` (applied: never an answer to
-- the bot) and forwarded to the desk through `desk_messages`, a small outbox of its own.
ALTER TABLE handoffs ADD COLUMN mode TEXT NOT NULL DEFAULT 'end';
ALTER TABLE outbox ADD COLUMN agent_id TEXT;
ALTER TABLE outbox ADD COLUMN agent_message_id TEXT;
CREATE UNIQUE INDEX outbox_agent_message ON outbox (institution_id, conversation_id, agent_message_id)
    WHERE agent_message_id IS NOT NULL;
ALTER TABLE inbox ADD COLUMN held_at REAL;
CREATE TABLE desk_messages (
    id               INTEGER PRIMARY KEY,
    inbox_id         INTEGER NOT NULL UNIQUE,
    execution_id     TEXT    NOT NULL,
    created_at       REAL    NOT NULL,
    next_at          REAL    NOT NULL,
    sent_at          REAL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    lease_expires_at REAL,
    last_error       TEXT
);
CREATE INDEX desk_messages_due ON desk_messages (next_at) WHERE sent_at IS NULL;
CREATE INDEX desk_messages_execution ON desk_messages (execution_id, id) WHERE sent_at IS NULL;
