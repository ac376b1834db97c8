"""What the service keeps: the database (engine, Alembic migrations), feedback, the card ledger and snoozes, and
first-use memories (the jti replay cache, cards already shown)."""
