"""The runner: configuration, run expansion and seeding, provenance, and the command line."""
