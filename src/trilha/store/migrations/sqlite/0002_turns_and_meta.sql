-- trilha schema, version 2: turn deadline and recovery bookkeeping
ALTER TABLE executions ADD COLUMN turn_started_at REAL;
ALTER TABLE executions ADD COLUMN meta TEXT NOT NULL DEFAULT '{}';
CREATE INDEX executions_active ON executions (status)
    WHERE status NOT IN ('completed', 'failed', 'cancelled', 'timeout');
