-- trilha schema, version 16: sub-flows that return. An execution inside a sub-flow keeps
-- its callers (each one's flow, the subflow node it waits at, its variables) as a JSON
-- list in `stack`, oldest first; '[]' outside a sub-flow, as every row written before.
ALTER TABLE executions ADD COLUMN stack TEXT NOT NULL DEFAULT '[]';
