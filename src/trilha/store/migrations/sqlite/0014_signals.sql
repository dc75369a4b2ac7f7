-- trilha schema, version 14: signals, the events from outside a conversation (a payment
-- confirmed) that a wait_event node waits for. One row per signal, unique per execution
-- and signalId (a repeat is answered with the first); `payload` is its JSON; a step that
-- consumes it sets `consumed_at` and `consumed_step` in its own commit, so a signal is
-- applied once. A signal sent before the execution reaches its node waits here, pending.
CREATE TABLE signals (
    id              INTEGER PRIMARY KEY,
    execution_id    TEXT    NOT NULL,
    institution_id  TEXT    NOT NULL,
    event           TEXT    NOT NULL,
    signal_id       TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    received_at     REAL    NOT NULL,
    consumed_at     REAL,
    consumed_step   INTEGER,
    UNIQUE (execution_id, signal_id)
);
-- the oldest pending signal of an event, and how many an execution has pending
CREATE INDEX signals_pending ON signals (execution_id, event, id) WHERE consumed_at IS NULL;
CREATE INDEX signals_execution ON signals (execution_id, id);
