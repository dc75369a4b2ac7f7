-- trilha schema, version 4 (PostgreSQL): SQLite's version 9. Dead messages found
-- without reading the outbox: `GET /v1/outbox?status=dead`, `trilha outbox` and the
-- dead-messages alert (evaluated every 15 s by every worker) read them through this
-- partial index, which holds the dead rows only, instead of scanning every message
-- ever sent.
CREATE INDEX outbox_dead ON outbox (institution_id, id) WHERE status = 'dead';
