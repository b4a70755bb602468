"""State and records behind small Protocols: in-memory/SQLite by default, Redis/PostgreSQL when outgrown."""
