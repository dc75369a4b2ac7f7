-- trilha schema, version 15: business hours. An institution's calendars, by name
-- (`PUT /v1/calendars/{name}`): the definition is the calendar's canonical JSON
-- (time zone, weekly hours, holidays), checked before it is stored. Those of
-- trilha.toml are not stored: the configuration is read where it is.
CREATE TABLE calendars (
    institution_id TEXT NOT NULL,
    name           TEXT NOT NULL,
    definition     TEXT NOT NULL,
    created_at     REAL NOT NULL,
    updated_at     REAL NOT NULL,
    PRIMARY KEY (institution_id, name)
) WITHOUT ROWID;
