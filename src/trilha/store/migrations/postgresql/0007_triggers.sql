-- trilha schema, version 7 (PostgreSQL): SQLite's version 12. An institution's triggers
-- (which flow a contact's message starts when nothing runs in its conversation), as set
-- through `PUT /v1/triggers`: one row per institution holding the whole list as JSON
-- text, replaced as a whole. No row: the institution has not set any, and the
-- `[[triggers]]` of trilha.toml apply.
CREATE TABLE triggers (
    institution_id TEXT COLLATE "C" PRIMARY KEY,
    triggers       TEXT COLLATE "C" NOT NULL,
    updated_at     DOUBLE PRECISION NOT NULL,
    updated_by     TEXT COLLATE "C"
);
