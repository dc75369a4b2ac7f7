-- trilha schema, version 9 (PostgreSQL): SQLite's version 14. Signals, the events from
-- outside a conversation (a payment confirmed) that a wait_event node waits for. One row
-- per signal, unique per execution and signalId (a repeat is answered with the first);
-- `payload` is its JSON text; a step that consumes it sets `consumed_at` and
-- `consumed_step` in its own commit, so a signal is applied once. A signal sent before
-- the execution reaches its node waits here, pending.
CREATE TABLE signals (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    execution_id    TEXT COLLATE "C" NOT NULL,
    institution_id  TEXT COLLATE "C" NOT NULL,
    event           TEXT COLLATE "C" NOT NULL,
    signal_id       TEXT COLLATE "C" NOT NULL,
    payload         TEXT COLLATE "C" NOT NULL,
    received_at     DOUBLE PRECISION NOT NULL,
    consumed_at     DOUBLE PRECISION,
    consumed_step   INTEGER,
    UNIQUE (execution_id, signal_id)
);
-- the oldest pending signal of an event, and how many an execution has pending
CREATE INDEX signals_pending ON signals (execution_id, event, id) WHERE consumed_at IS NULL;
CREATE INDEX signals_execution ON signals (execution_id, id);
