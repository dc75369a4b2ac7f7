-- trilha schema, version 21: bulk actions (`POST /v1/executions/bulk`, `trilha bulk`).
-- A job pauses, resumes, cancels or retries the executions a listing's filter matches,
-- one at a time through the operator controls, in the listing's order (newest first);
-- `cursor_*` is the last execution handled, so a job resumed by another process (the
-- lease: `lease_owner` with `lease_expires_at`, and the owner's heartbeat) goes on
-- after it. `filter` is the filter as the caller gave it (wire JSON), `selection` the
-- store's filter it resolved to at the start (so a resumed job selects the same set).
CREATE TABLE bulk_jobs (
    id               TEXT    PRIMARY KEY,
    institution_id   TEXT    NOT NULL,
    actor            TEXT    NOT NULL,
    action           TEXT    NOT NULL,
    filter           TEXT    NOT NULL,
    selection        TEXT    NOT NULL,
    reason           TEXT,
    status           TEXT    NOT NULL DEFAULT 'running',
    total            INTEGER NOT NULL,
    done             INTEGER NOT NULL DEFAULT 0,
    succeeded        INTEGER NOT NULL DEFAULT 0,
    skipped          INTEGER NOT NULL DEFAULT 0,
    failed           INTEGER NOT NULL DEFAULT 0,
    errors           TEXT    NOT NULL DEFAULT '[]',
    skips            TEXT    NOT NULL DEFAULT '[]',
    cursor_created_at REAL,
    cursor_id        TEXT,
    created_at       REAL    NOT NULL,
    updated_at       REAL    NOT NULL,
    finished_at      REAL,
    lease_owner      TEXT,
    lease_expires_at REAL
);
CREATE INDEX bulk_jobs_running ON bulk_jobs (created_at) WHERE status = 'running';
CREATE INDEX bulk_jobs_institution ON bulk_jobs (institution_id, status);
