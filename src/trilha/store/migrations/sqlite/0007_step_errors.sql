-- trilha schema, version 7: what leads from an alert to its cause. A row per failed
-- step (a checkpoint with an error), written in the step's commit, with what errors
-- are grouped by (flow, node, dependency, kind, HTTP status) as columns and the input
-- the step failed on (the request of an http or ai step): `GET /v1/errors` aggregates
-- a time window off an index without reading checkpoints' JSON, and the listing's
-- error filters find the executions behind a group. Steps that failed before this
-- version are not copied in (their JSON is not always readable by SQL alone); they
-- age out of the one-hour default window anyway.
CREATE TABLE step_errors (
    execution_id   TEXT    NOT NULL,
    seq            INTEGER NOT NULL,
    institution_id TEXT    NOT NULL,
    flow_id        TEXT    NOT NULL,
    node_id        TEXT,
    node_type      TEXT,
    dependency     TEXT,
    kind           TEXT,
    status         INTEGER,
    type           TEXT,
    message        TEXT,
    input          TEXT,
    at             REAL    NOT NULL,
    PRIMARY KEY (execution_id, seq)
) WITHOUT ROWID;
CREATE INDEX step_errors_at ON step_errors (at);
CREATE INDEX step_errors_institution ON step_errors (institution_id, at);

-- executions by outcome, newest first (`?outcome=escalated`) and counted per outcome,
-- for every tenant and for one; partial, so only a step that ends an execution
-- touches them
CREATE INDEX executions_outcome ON executions (outcome, created_at) WHERE outcome IS NOT NULL;
CREATE INDEX executions_institution_outcome ON executions (institution_id, outcome, created_at)
    WHERE outcome IS NOT NULL;
