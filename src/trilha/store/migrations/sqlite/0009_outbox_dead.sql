-- trilha schema, version 9: dead messages found without reading the outbox. A message
-- the dispatcher gave up on stays in the outbox as `dead` until an operator redrives
-- it; `GET /v1/outbox?status=dead`, `trilha outbox` and the dead-messages alert
-- (evaluated every 15 s by every worker) read them through this partial index, which
-- holds the dead rows only, instead of scanning every message ever sent.
CREATE INDEX outbox_dead ON outbox (institution_id, id) WHERE status = 'dead';
