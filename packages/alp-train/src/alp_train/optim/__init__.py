"""Optimizers and learning-rate schedules, registered by name through the ALP hooks."""
