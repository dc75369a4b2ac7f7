-- trilha schema, version 10 (PostgreSQL): SQLite's version 15. Business hours: an
-- institution's calendars, by name (`PUT /v1/calendars/{name}`); the definition is
-- the calendar's canonical JSON text (time zone, weekly hours, holidays), checked
-- before it is stored. Those of trilha.toml are not stored.
CREATE TABLE calendars (
    institution_id TEXT COLLATE "C" NOT NULL,
    name           TEXT COLLATE "C" NOT NULL,
    definition     TEXT COLLATE "C" NOT NULL,
    created_at     DOUBLE PRECISION NOT NULL,
    updated_at     DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (institution_id, name)
);
