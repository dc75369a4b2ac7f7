-- trilha schema, version 3: handoffs are notified to the handoff desk (a declared
-- dependency) through a small outbox of their own
ALTER TABLE handoffs ADD COLUMN notified_at REAL;
ALTER TABLE handoffs ADD COLUMN notify_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE handoffs ADD COLUMN next_notify_at REAL;
ALTER TABLE handoffs ADD COLUMN lease_expires_at REAL;
ALTER TABLE handoffs ADD COLUMN last_error TEXT;
CREATE INDEX handoffs_to_notify ON handoffs (next_notify_at) WHERE notified_at IS NULL;
