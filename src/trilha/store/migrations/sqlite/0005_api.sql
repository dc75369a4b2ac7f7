-- trilha schema, version 5: what the HTTP API keeps and reads. API keys (only a
-- hash of each secret), the responses to requests made with an Idempotency-Key
-- (replayed on a retry, purged by age), and the indexes behind the execution
-- listing: newest first, by tenant, flow or contact, in keyset pages. A
-- conversation already has executions_conversation, the stuck filter
-- executions_active; the live trail pages by execution_logs' own id.
CREATE TABLE api_keys (
    key_id         TEXT PRIMARY KEY,
    institution_id TEXT NOT NULL,
    role           TEXT NOT NULL,
    secret_hash    TEXT NOT NULL,
    name           TEXT,
    created_at     REAL NOT NULL,
    revoked_at     REAL
) WITHOUT ROWID;

CREATE TABLE idempotency (
    scope        TEXT    NOT NULL,
    key          TEXT    NOT NULL,
    request_hash TEXT    NOT NULL,
    status       INTEGER NOT NULL,
    body         TEXT,
    created_at   REAL    NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_created ON idempotency (created_at);

-- a status listing reads newest first off its index (nothing read by updated_at)
DROP INDEX executions_status;
CREATE INDEX executions_status_created ON executions (status, created_at);
CREATE INDEX executions_created ON executions (created_at);
CREATE INDEX executions_institution ON executions (institution_id, created_at);
CREATE INDEX executions_flow ON executions (flow_id, created_at);
CREATE INDEX executions_contact ON executions (contact_id, created_at);
