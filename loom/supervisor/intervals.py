"""How often the supervisor looks at things, read once from the environment at its start.

The defaults suit a machine; tests set them small (docs/configuration.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from loom import settings


@dataclass(frozen=True)
class Intervals:
    """Seconds between the supervisor's periodic jobs."""

    # periodic rescan: signals are a nudge, not a requirement (SPEC 8)
    rescan: float = settings.SUPERVISOR_RESCAN.default
    # adopted children are not ours to wait() for: poll their pid
    adopted_poll: float = settings.ADOPTED_POLL.default
    stats_every: float = settings.STATS_EVERY.default
    # metrics.prom: scrapers read it every 15 s or more
    metrics_every: float = settings.METRICS_EVERY.default
    # How long a supervisor started on demand lingers with nothing to do before exiting,
    # so that `loom agent start -d a; loom agent start -d b` does not start two in a row.
    linger: float = settings.SUPERVISOR_LINGER.default

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Intervals:
        """Read the supervisor's interval settings (docs/configuration.md)."""
        return cls(
            rescan=settings.SUPERVISOR_RESCAN.get(env),
            adopted_poll=settings.ADOPTED_POLL.get(env),
            stats_every=settings.STATS_EVERY.get(env),
            metrics_every=settings.METRICS_EVERY.get(env),
            linger=settings.SUPERVISOR_LINGER.get(env),
        )
