"""Weaves: the graph of agents and pipes declared in `loom.yml` (SPEC 9)."""
