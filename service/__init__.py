"""dirconv's HTTP side, plus the pieces the worker shares with it (settings, ORM, spec)."""
