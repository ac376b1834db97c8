"""Cards: rule decisions rendered to CDS Hooks JSON, and what is held back (repeats, shadow mode, snoozes)."""
