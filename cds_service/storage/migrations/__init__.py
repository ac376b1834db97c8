"""Schema migrations (Alembic) for the service's own tables: feedback, the card ledger, snoozes.

`storage.migrate(engine)` runs them to head at start; `alembic` on the command line is not needed."""
