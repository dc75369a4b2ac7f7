-- trilha schema, version 11 (PostgreSQL): SQLite's version 16. Sub-flows that return: an
-- execution inside a sub-flow keeps its callers (each one's flow, the subflow node it
-- waits at, its variables) as JSON text in `stack`, oldest first; '[]' outside a
-- sub-flow, as every row written before.
ALTER TABLE executions ADD COLUMN stack TEXT COLLATE "C" NOT NULL DEFAULT '[]';
