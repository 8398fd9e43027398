"""Agents: an LLM behind an inbox and an outbox (SPEC 4-5).

Starting and answering sessions, the runner that serves an agent's queue, retries of
provider calls, and the handover of a foreground session. This package imports nothing
itself.
"""
