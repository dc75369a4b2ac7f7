-- trilha schema, version 5 (PostgreSQL): SQLite's version 10. What a message says
-- beyond its text: a bot message's buttons, list, media or location, and a contact's
-- button reply, list choice, photo or shared location, are kept as JSON text in
-- `content` (NULL: a plain text), as `payload` is; `text` keeps a plain rendering of
-- it, so every reader of the text alone goes on working.
ALTER TABLE outbox ADD COLUMN content TEXT COLLATE "C";
ALTER TABLE inbox ADD COLUMN content TEXT COLLATE "C";
