-- trilha schema, version 22: the record of each erasure (a contact forgotten on request,
-- or the executions a retention run removed). It names no one: the erasure's own id
-- (given to the caller in its receipt), the institution, who asked, when, and how much
-- of each kind went (JSON). A contact's id is not kept, not even hashed: a phone
-- number's hash is reversed by trying every number.
CREATE TABLE erasures (
    id             TEXT PRIMARY KEY,
    institution_id TEXT NOT NULL,
    kind           TEXT NOT NULL,
    actor          TEXT NOT NULL,
    at             REAL NOT NULL,
    removed        TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX erasures_institution ON erasures (institution_id, at);
