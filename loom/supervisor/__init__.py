"""The supervisor: spawns agents and pipe instances, restarts them, routes their messages (SPEC 7-8)."""
