-- trilha schema, version 10: what a message says beyond its text. A bot message's
-- buttons, list, media or location, and a contact's button reply, list choice, photo
-- or shared location, are kept as JSON in `content` (NULL: a plain text); `text`
-- keeps a plain rendering of it, so every reader of the text alone goes on working.
ALTER TABLE outbox ADD COLUMN content TEXT;
ALTER TABLE inbox ADD COLUMN content TEXT;
