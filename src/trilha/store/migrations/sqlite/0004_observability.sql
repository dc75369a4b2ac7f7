-- trilha schema, version 4: what alerts and `trilha stats` read without scanning
-- whole tables: steps by start time, a row per finished turn, running turns by start,
-- and the alert rules' states (shared by every process on the store)
CREATE INDEX checkpoints_started ON checkpoints (started_at);

CREATE TABLE turns (
    id             INTEGER PRIMARY KEY,
    execution_id   TEXT    NOT NULL,
    institution_id TEXT    NOT NULL,
    flow_id        TEXT    NOT NULL,
    flow_version   INTEGER NOT NULL,
    started_at     REAL    NOT NULL,
    ended_at       REAL    NOT NULL,
    duration       REAL    NOT NULL,
    status         TEXT    NOT NULL
);
CREATE INDEX turns_ended ON turns (ended_at);

CREATE INDEX executions_turn ON executions (turn_started_at) WHERE turn_started_at IS NOT NULL;
CREATE INDEX executions_ended ON executions (ended_at) WHERE ended_at IS NOT NULL;

CREATE TABLE alerts (
    rule        TEXT NOT NULL,
    instance    TEXT NOT NULL,
    state       TEXT NOT NULL,
    severity    TEXT NOT NULL,
    value       REAL,
    threshold   REAL NOT NULL,
    summary     TEXT NOT NULL,
    active_at   REAL,
    fired_at    REAL,
    resolved_at REAL,
    updated_at  REAL NOT NULL,
    PRIMARY KEY (rule, instance)
);

CREATE TABLE alert_history (
    id       INTEGER PRIMARY KEY,
    rule     TEXT NOT NULL,
    instance TEXT NOT NULL,
    state    TEXT NOT NULL,
    value    REAL,
    summary  TEXT NOT NULL,
    at       REAL NOT NULL
);
CREATE INDEX alert_history_at ON alert_history (at);
