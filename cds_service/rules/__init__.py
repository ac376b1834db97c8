"""Card rules: pure functions from clinical facts and configuration to card decisions."""
