-- trilha schema, version 1 (SQLite)
CREATE TABLE flows (
    flow_id     TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    definition  TEXT    NOT NULL,
    digest      TEXT    NOT NULL,
    created_at  REAL    NOT NULL,
    PRIMARY KEY (flow_id, version)
) WITHOUT ROWID;

CREATE TABLE executions (
    id               TEXT PRIMARY KEY,
    institution_id   TEXT    NOT NULL,
    conversation_id  TEXT    NOT NULL,
    contact_id       TEXT    NOT NULL,
    flow_id          TEXT    NOT NULL,
    flow_version     INTEGER NOT NULL,
    status           TEXT    NOT NULL,
    outcome          TEXT,
    current_node_id  TEXT,
    variables        TEXT    NOT NULL,
    node_state       TEXT    NOT NULL,
    waiting_for      TEXT,
    due_at           REAL,
    wake_at          REAL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    step_seq         INTEGER NOT NULL DEFAULT 0,
    channel          TEXT    NOT NULL,
    start_variables  TEXT    NOT NULL,
    paused_from      TEXT,
    error            TEXT,
    created_at       REAL    NOT NULL,
    updated_at       REAL    NOT NULL,
    ended_at         REAL,
    fencing_token    INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_expires_at REAL,
    checksum         TEXT    NOT NULL
);
-- the queue: an execution is claimable when wake_at has come and no live lease holds it
CREATE INDEX executions_wake ON executions (wake_at) WHERE wake_at IS NOT NULL;
-- one active execution per conversation
CREATE UNIQUE INDEX executions_one_active ON executions (institution_id, conversation_id)
    WHERE status NOT IN ('completed', 'failed', 'cancelled', 'timeout');
CREATE INDEX executions_conversation ON executions (conversation_id, created_at);
CREATE INDEX executions_status ON executions (status, updated_at);

CREATE TABLE checkpoints (
    execution_id   TEXT    NOT NULL,
    seq            INTEGER NOT NULL,
    node_id        TEXT,
    node_type      TEXT,
    status         TEXT    NOT NULL,
    state          TEXT    NOT NULL,
    checksum       TEXT    NOT NULL,
    schema_version INTEGER NOT NULL,
    started_at     REAL    NOT NULL,
    duration       REAL    NOT NULL,
    input          TEXT,
    output         TEXT,
    error          TEXT,
    attempt        INTEGER NOT NULL,
    PRIMARY KEY (execution_id, seq)
) WITHOUT ROWID;

CREATE TABLE transitions (
    id            INTEGER PRIMARY KEY,
    execution_id  TEXT NOT NULL,
    source        TEXT,
    target        TEXT NOT NULL,
    reason        TEXT NOT NULL,
    actor         TEXT NOT NULL,
    node_id       TEXT,
    at            REAL NOT NULL
);
CREATE INDEX transitions_execution ON transitions (execution_id, id);

CREATE TABLE outbox (
    id               INTEGER PRIMARY KEY,
    idempotency_key  TEXT    NOT NULL UNIQUE,
    execution_id     TEXT    NOT NULL,
    institution_id   TEXT    NOT NULL,
    conversation_id  TEXT    NOT NULL,
    contact_id       TEXT    NOT NULL,
    channel          TEXT    NOT NULL,
    text             TEXT    NOT NULL,
    payload          TEXT,
    step_seq         INTEGER NOT NULL,
    created_at       REAL    NOT NULL,
    status           TEXT    NOT NULL DEFAULT 'pending',
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  REAL,
    lease_owner      TEXT,
    lease_expires_at REAL,
    sent_at          REAL,
    last_error       TEXT
);
CREATE INDEX outbox_pending ON outbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX outbox_execution ON outbox (execution_id, id);
CREATE INDEX outbox_conversation_pending ON outbox (institution_id, conversation_id, id)
    WHERE status = 'pending';

CREATE TABLE inbox (
    id               INTEGER PRIMARY KEY,
    institution_id   TEXT    NOT NULL,
    conversation_id  TEXT    NOT NULL,
    message_id       TEXT    NOT NULL,
    contact_id       TEXT    NOT NULL,
    text             TEXT    NOT NULL,
    payload          TEXT,
    received_at      REAL    NOT NULL,
    execution_id     TEXT,
    applied_at       REAL,
    applied_step     INTEGER,
    UNIQUE (institution_id, conversation_id, message_id)
);
CREATE INDEX inbox_pending ON inbox (execution_id, id) WHERE applied_at IS NULL;
CREATE INDEX inbox_execution ON inbox (execution_id, id);

CREATE TABLE handoffs (
    id               INTEGER PRIMARY KEY,
    execution_id     TEXT NOT NULL,
    institution_id   TEXT NOT NULL,
    conversation_id  TEXT NOT NULL,
    contact_id       TEXT NOT NULL,
    queue            TEXT NOT NULL,
    reason           TEXT,
    status           TEXT NOT NULL DEFAULT 'open',
    at               REAL NOT NULL
);
CREATE INDEX handoffs_execution ON handoffs (execution_id);

CREATE TABLE execution_logs (
    id            INTEGER PRIMARY KEY,
    execution_id  TEXT NOT NULL,
    at            REAL NOT NULL,
    level         TEXT NOT NULL,
    message       TEXT NOT NULL,
    node_id       TEXT,
    node_type     TEXT,
    context       TEXT NOT NULL
);
CREATE INDEX execution_logs_execution ON execution_logs (execution_id, id);

-- rows that failed their checksum or schema, kept for diagnosis, never deleted
CREATE TABLE quarantine (
    id            INTEGER PRIMARY KEY,
    execution_id  TEXT NOT NULL,
    kind          TEXT NOT NULL,
    reason        TEXT NOT NULL,
    payload       TEXT,
    at            REAL NOT NULL
);
