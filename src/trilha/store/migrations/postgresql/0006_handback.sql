-- trilha schema, version 6 (PostgreSQL): SQLite's version 11. A person takes a
-- conversation over and hands it back. A handoff is `end` (the execution ended) or
-- `wait` (a person holds the conversation); a person's message goes out through the
-- outbox with its `agent_id`, once per `agent_message_id` (the platform's id) in the
-- conversation; a contact's message said while a person held the conversation is marked
-- `held_at` (applied: never an answer to the bot) and forwarded to the desk through
-- `desk_messages`, a small outbox of its own.
ALTER TABLE handoffs ADD COLUMN mode TEXT COLLATE "C" NOT NULL DEFAULT 'end';
ALTER TABLE outbox ADD COLUMN agent_id TEXT COLLATE "C";
ALTER TABLE outbox ADD COLUMN agent_message_id TEXT COLLATE "C";
CREATE UNIQUE INDEX outbox_agent_message ON outbox (institution_id, conversation_id, agent_message_id)
    WHERE agent_message_id IS NOT NULL;
ALTER TABLE inbox ADD COLUMN held_at DOUBLE PRECISION;
CREATE TABLE desk_messages (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    inbox_id         BIGINT           NOT NULL UNIQUE,
    execution_id     TEXT COLLATE "C" NOT NULL,
    created_at       DOUBLE PRECISION NOT NULL,
    next_at          DOUBLE PRECISION NOT NULL,
    sent_at          DOUBLE PRECISION,
    attempts         INTEGER          NOT NULL DEFAULT 0,
    lease_expires_at DOUBLE PRECISION,
    last_error       TEXT COLLATE "C"
);
CREATE INDEX desk_messages_due ON desk_messages (next_at) WHERE sent_at IS NULL;
CREATE INDEX desk_messages_execution ON desk_messages (execution_id, id) WHERE sent_at IS NULL;
