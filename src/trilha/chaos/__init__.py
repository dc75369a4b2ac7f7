"""``trilha chaos``: fault-injection scenarios run against the engine, measured
against the eight validation criteria, and reported as JSON and self-contained HTML."""
