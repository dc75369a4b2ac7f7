-- trilha schema, version 6: the processes holding leases, and until when each is
-- known alive (its heartbeat): a lease whose owner stopped beating is taken over
-- without waiting for it to expire
CREATE TABLE workers (
    worker_id   TEXT PRIMARY KEY,
    alive_until REAL NOT NULL,
    started_at  REAL NOT NULL,
    beat_at     REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX executions_leased ON executions (lease_owner) WHERE lease_owner IS NOT NULL;
