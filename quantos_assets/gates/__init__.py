"""Promotion gates: a model reaches staging, canary and prod only through blocking checks."""
