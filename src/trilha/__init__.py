"""trilha."""
