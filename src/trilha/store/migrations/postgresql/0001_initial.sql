-- trilha schema, version 1 (PostgreSQL): the SQLite schema at its version 6, in
-- PostgreSQL's types. Times are seconds since the epoch (double precision), as the
-- engine's clock gives them; JSON is kept as text, checksummed by the engine, so a
-- corrupted value reads back as it was written and fails its checksum. Text compares
-- byte by byte (COLLATE "C"), as in SQLite, whatever the database's locale.
CREATE TABLE flows (
    flow_id     TEXT COLLATE "C" NOT NULL,
    version     INTEGER          NOT NULL,
    definition  TEXT COLLATE "C" NOT NULL,
    digest      TEXT COLLATE "C" NOT NULL,
    created_at  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (flow_id, version)
);

CREATE TABLE executions (
    id               TEXT COLLATE "C" PRIMARY KEY,
    institution_id   TEXT COLLATE "C" NOT NULL,
    conversation_id  TEXT COLLATE "C" NOT NULL,
    contact_id       TEXT COLLATE "C" NOT NULL,
    flow_id          TEXT COLLATE "C" NOT NULL,
    flow_version     INTEGER          NOT NULL,
    status           TEXT COLLATE "C" NOT NULL,
    outcome          TEXT COLLATE "C",
    current_node_id  TEXT COLLATE "C",
    variables        TEXT COLLATE "C" NOT NULL,
    node_state       TEXT COLLATE "C" NOT NULL,
    waiting_for      TEXT COLLATE "C",
    due_at           DOUBLE PRECISION,
    wake_at          DOUBLE PRECISION,
    attempts         INTEGER          NOT NULL DEFAULT 0,
    step_seq         INTEGER          NOT NULL DEFAULT 0,
    channel          TEXT COLLATE "C" NOT NULL,
    start_variables  TEXT COLLATE "C" NOT NULL,
    paused_from      TEXT COLLATE "C",
    error            TEXT COLLATE "C",
    created_at       DOUBLE PRECISION NOT NULL,
    updated_at       DOUBLE PRECISION NOT NULL,
    ended_at         DOUBLE PRECISION,
    turn_started_at  DOUBLE PRECISION,
    meta             TEXT COLLATE "C" NOT NULL DEFAULT '{}',
    fencing_token    BIGINT           NOT NULL DEFAULT 0,
    lease_owner      TEXT COLLATE "C",
    lease_expires_at DOUBLE PRECISION,
    checksum         TEXT COLLATE "C" NOT NULL,
    -- insertion order, the tie-break between executions created in the same instant
    row_seq          BIGINT GENERATED ALWAYS AS IDENTITY
);
-- the queue: claimable when wake_at has come and no live lease holds it
CREATE INDEX executions_wake ON executions (wake_at) WHERE wake_at IS NOT NULL;
-- one active execution per conversation
CREATE UNIQUE INDEX executions_one_active ON executions (institution_id, conversation_id)
    WHERE status NOT IN ('completed', 'failed', 'cancelled', 'timeout');
CREATE INDEX executions_active ON executions (status)
    WHERE status NOT IN ('completed', 'failed', 'cancelled', 'timeout');
CREATE INDEX executions_conversation ON executions (conversation_id, created_at);
CREATE INDEX executions_status_created ON executions (status, created_at);
CREATE INDEX executions_created ON executions (created_at);
CREATE INDEX executions_institution ON executions (institution_id, created_at);
CREATE INDEX executions_flow ON executions (flow_id, created_at);
CREATE INDEX executions_contact ON executions (contact_id, created_at);
CREATE INDEX executions_turn ON executions (turn_started_at) WHERE turn_started_at IS NOT NULL;
CREATE INDEX executions_ended ON executions (ended_at) WHERE ended_at IS NOT NULL;
CREATE INDEX executions_leased ON executions (lease_owner) WHERE lease_owner IS NOT NULL;

CREATE TABLE checkpoints (
    execution_id   TEXT COLLATE "C" NOT NULL,
    seq            INTEGER          NOT NULL,
    node_id        TEXT COLLATE "C",
    node_type      TEXT COLLATE "C",
    status         TEXT COLLATE "C" NOT NULL,
    state          TEXT COLLATE "C" NOT NULL,
    checksum       TEXT COLLATE "C" NOT NULL,
    schema_version INTEGER          NOT NULL,
    started_at     DOUBLE PRECISION NOT NULL,
    duration       DOUBLE PRECISION NOT NULL,
    input          TEXT COLLATE "C",
    output         TEXT COLLATE "C",
    error          TEXT COLLATE "C",
    attempt        INTEGER          NOT NULL,
    PRIMARY KEY (execution_id, seq)
);
CREATE INDEX checkpoints_started ON checkpoints (started_at);

CREATE TABLE transitions (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    execution_id  TEXT COLLATE "C" NOT NULL,
    source        TEXT COLLATE "C",
    target        TEXT COLLATE "C" NOT NULL,
    reason        TEXT COLLATE "C" NOT NULL,
    actor         TEXT COLLATE "C" NOT NULL,
    node_id       TEXT COLLATE "C",
    at            DOUBLE PRECISION NOT NULL
);
CREATE INDEX transitions_execution ON transitions (execution_id, id);

CREATE TABLE outbox (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    idempotency_key  TEXT COLLATE "C" NOT NULL UNIQUE,
    execution_id     TEXT COLLATE "C" NOT NULL,
    institution_id   TEXT COLLATE "C" NOT NULL,
    conversation_id  TEXT COLLATE "C" NOT NULL,
    contact_id       TEXT COLLATE "C" NOT NULL,
    channel          TEXT COLLATE "C" NOT NULL,
    text             TEXT COLLATE "C" NOT NULL,
    payload          TEXT COLLATE "C",
    step_seq         INTEGER          NOT NULL,
    created_at       DOUBLE PRECISION NOT NULL,
    status           TEXT COLLATE "C" NOT NULL DEFAULT 'pending',
    attempts         INTEGER          NOT NULL DEFAULT 0,
    next_attempt_at  DOUBLE PRECISION,
    lease_owner      TEXT COLLATE "C",
    lease_expires_at DOUBLE PRECISION,
    sent_at          DOUBLE PRECISION,
    last_error       TEXT COLLATE "C"
);
CREATE INDEX outbox_pending ON outbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX outbox_execution ON outbox (execution_id, id);
CREATE INDEX outbox_conversation_pending ON outbox (institution_id, conversation_id, id)
    WHERE status = 'pending';

CREATE TABLE inbox (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    institution_id   TEXT COLLATE "C" NOT NULL,
    conversation_id  TEXT COLLATE "C" NOT NULL,
    message_id       TEXT COLLATE "C" NOT NULL,
    contact_id       TEXT COLLATE "C" NOT NULL,
    text             TEXT COLLATE "C" NOT NULL,
    payload          TEXT COLLATE "C",
    received_at      DOUBLE PRECISION NOT NULL,
    execution_id     TEXT COLLATE "C",
    applied_at       DOUBLE PRECISION,
    applied_step     INTEGER,
    UNIQUE (institution_id, conversation_id, message_id)
);
CREATE INDEX inbox_pending ON inbox (execution_id, id) WHERE applied_at IS NULL;
CREATE INDEX inbox_execution ON inbox (execution_id, id);

CREATE TABLE handoffs (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    execution_id     TEXT COLLATE "C" NOT NULL,
    institution_id   TEXT COLLATE "C" NOT NULL,
    conversation_id  TEXT COLLATE "C" NOT NULL,
    contact_id       TEXT COLLATE "C" NOT NULL,
    queue            TEXT COLLATE "C" NOT NULL,
    reason           TEXT COLLATE "C",
    status           TEXT COLLATE "C" NOT NULL DEFAULT 'open',
    at               DOUBLE PRECISION NOT NULL,
    notified_at      DOUBLE PRECISION,
    notify_attempts  INTEGER          NOT NULL DEFAULT 0,
    next_notify_at   DOUBLE PRECISION,
    lease_expires_at DOUBLE PRECISION,
    last_error       TEXT COLLATE "C"
);
CREATE INDEX handoffs_execution ON handoffs (execution_id);
CREATE INDEX handoffs_to_notify ON handoffs (next_notify_at) WHERE notified_at IS NULL;

-- the trail. Ids come from a sequence, so concurrent transactions may commit them out
-- of order: a reader hands lines out only once every transaction that was running
-- when it saw the newest of them has ended (PostgresStore.trail_since)
CREATE TABLE execution_logs (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    execution_id  TEXT COLLATE "C" NOT NULL,
    at            DOUBLE PRECISION NOT NULL,
    level         TEXT COLLATE "C" NOT NULL,
    message       TEXT COLLATE "C" NOT NULL,
    node_id       TEXT COLLATE "C",
    node_type     TEXT COLLATE "C",
    context       TEXT COLLATE "C" NOT NULL
);
CREATE INDEX execution_logs_execution ON execution_logs (execution_id, id);

CREATE TABLE quarantine (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    execution_id  TEXT COLLATE "C" NOT NULL,
    kind          TEXT COLLATE "C" NOT NULL,
    reason        TEXT COLLATE "C" NOT NULL,
    payload       TEXT COLLATE "C",
    at            DOUBLE PRECISION NOT NULL
);

CREATE TABLE turns (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    execution_id   TEXT COLLATE "C" NOT NULL,
    institution_id TEXT COLLATE "C" NOT NULL,
    flow_id        TEXT COLLATE "C" NOT NULL,
    flow_version   INTEGER          NOT NULL,
    started_at     DOUBLE PRECISION NOT NULL,
    ended_at       DOUBLE PRECISION NOT NULL,
    duration       DOUBLE PRECISION NOT NULL,
    status         TEXT COLLATE "C" NOT NULL
);
CREATE INDEX turns_ended ON turns (ended_at);

CREATE TABLE alerts (
    rule        TEXT COLLATE "C" NOT NULL,
    instance    TEXT COLLATE "C" NOT NULL,
    state       TEXT COLLATE "C" NOT NULL,
    severity    TEXT COLLATE "C" NOT NULL,
    value       DOUBLE PRECISION,
    threshold   DOUBLE PRECISION NOT NULL,
    summary     TEXT COLLATE "C" NOT NULL,
    active_at   DOUBLE PRECISION,
    fired_at    DOUBLE PRECISION,
    resolved_at DOUBLE PRECISION,
    updated_at  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (rule, instance)
);

CREATE TABLE alert_history (
    id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule     TEXT COLLATE "C" NOT NULL,
    instance TEXT COLLATE "C" NOT NULL,
    state    TEXT COLLATE "C" NOT NULL,
    value    DOUBLE PRECISION,
    summary  TEXT COLLATE "C" NOT NULL,
    at       DOUBLE PRECISION NOT NULL
);
CREATE INDEX alert_history_at ON alert_history (at);

CREATE TABLE api_keys (
    key_id         TEXT COLLATE "C" PRIMARY KEY,
    institution_id TEXT COLLATE "C" NOT NULL,
    role           TEXT COLLATE "C" NOT NULL,
    secret_hash    TEXT COLLATE "C" NOT NULL,
    name           TEXT COLLATE "C",
    created_at     DOUBLE PRECISION NOT NULL,
    revoked_at     DOUBLE PRECISION
);

CREATE TABLE idempotency (
    scope        TEXT COLLATE "C" NOT NULL,
    key          TEXT COLLATE "C" NOT NULL,
    request_hash TEXT COLLATE "C" NOT NULL,
    status       INTEGER          NOT NULL,
    body         TEXT COLLATE "C",
    created_at   DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_created ON idempotency (created_at);

-- the processes holding leases, and until when each is known alive (its heartbeat):
-- a lease whose owner stopped beating is taken over without waiting for it to expire
CREATE TABLE workers (
    worker_id   TEXT COLLATE "C" PRIMARY KEY,
    alive_until DOUBLE PRECISION NOT NULL,
    started_at  DOUBLE PRECISION NOT NULL,
    beat_at     DOUBLE PRECISION NOT NULL
);
