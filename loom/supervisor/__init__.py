"""The supervisor: spawns agents and pipe instances, restarts them, routes messages (SPEC 7-8)."""
