"""Training engines: how one optimisation step is run (single process for now)."""
