-- trilha schema, version 2 (PostgreSQL): SQLite's version 7. A row per failed step (a
-- checkpoint with an error), written in the step's commit, with what errors are
-- grouped by (flow, node, dependency, kind, HTTP status) as columns and the input the
-- step failed on: `GET /v1/errors` aggregates a time window off an index without
-- reading checkpoints' JSON, and the listing's error filters find the executions
-- behind a group. Steps that failed before this version are not copied in. And
-- executions by outcome, newest first and counted, through partial indexes that only
-- a step ending an execution touches.
CREATE TABLE step_errors (
    execution_id   TEXT COLLATE "C" NOT NULL,
    seq            INTEGER          NOT NULL,
    institution_id TEXT COLLATE "C" NOT NULL,
    flow_id        TEXT COLLATE "C" NOT NULL,
    node_id        TEXT COLLATE "C",
    node_type      TEXT COLLATE "C",
    dependency     TEXT COLLATE "C",
    kind           TEXT COLLATE "C",
    status         INTEGER,
    type           TEXT COLLATE "C",
    message        TEXT COLLATE "C",
    input          TEXT COLLATE "C",
    at             DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (execution_id, seq)
);
CREATE INDEX step_errors_at ON step_errors (at);
CREATE INDEX step_errors_institution ON step_errors (institution_id, at);

CREATE INDEX executions_outcome ON executions (outcome, created_at) WHERE outcome IS NOT NULL;
CREATE INDEX executions_institution_outcome ON executions (institution_id, outcome, created_at)
    WHERE outcome IS NOT NULL;
