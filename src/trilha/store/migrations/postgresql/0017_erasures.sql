-- trilha schema, version 17: the record of each erasure (a contact forgotten on request,
-- or the executions a retention run removed). It names no one: the erasure's own id
-- (given to the caller in its receipt), the institution, who asked, when, and how much
-- of each kind went (JSON). A contact's id is not kept, not even hashed: a phone
-- number's hash is reversed by trying every number.
CREATE TABLE erasures (
    id             TEXT COLLATE "C" PRIMARY KEY,
    institution_id TEXT COLLATE "C" NOT NULL,
    kind           TEXT COLLATE "C" NOT NULL,
    actor          TEXT COLLATE "C" NOT NULL,
    at             DOUBLE PRECISION NOT NULL,
    removed        TEXT COLLATE "C" NOT NULL
);
CREATE INDEX erasures_institution ON erasures (institution_id, at);
