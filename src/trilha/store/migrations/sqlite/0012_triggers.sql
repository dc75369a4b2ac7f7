-- trilha schema, version 12: an institution's triggers (which flow a contact's message
-- starts when nothing runs in its conversation), as set through `PUT /v1/triggers`: one
-- row per institution holding the whole list as JSON, replaced as a whole. No row: the
-- institution has not set any, and the `[[triggers]]` of trilha.toml apply.
CREATE TABLE triggers (
    institution_id TEXT PRIMARY KEY,
    triggers       TEXT NOT NULL,
    updated_at     REAL NOT NULL,
    updated_by     TEXT
);
