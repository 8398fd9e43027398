"""The operator's tools over a whole $LOOM_HOME: `stats`, `trace` and `gc` (SPEC 10-11).

They read everything the runtime writes, so they sit above it. This package imports
nothing itself.
"""
