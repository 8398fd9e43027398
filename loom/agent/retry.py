"""How the runner retries a failed model call (SPEC 5): 1 s, 2 s, 4 s, honouring Retry-After."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from loom import settings
from loom.errors import ProviderError

# A server asking for more than this is treated as asking for this; a message
# should not sit claimed for an hour because of one header.
MAX_RETRY_AFTER_S = 300.0


@dataclass(frozen=True)
class RetryPolicy:
    """Delays before each retry; their count is the number of retries."""

    delays: tuple[float, ...] = (1.0, 2.0, 4.0)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RetryPolicy:
        """`LOOM_RETRY_BASE` scales the delays (0.01 in tests); `LOOM_RETRIES` sets the count."""
        base = settings.RETRY_BASE.get(env)
        count = settings.RETRIES.get(env)
        return cls(tuple(base * 2**i for i in range(count)))

    def delay(self, retry: int, error: ProviderError) -> float | None:
        """Seconds to wait before retry number `retry` (0-based), or None to give up."""
        if not error.transient or retry >= len(self.delays):
            return None
        if error.retry_after is not None:
            return min(max(error.retry_after, 0.0), MAX_RETRY_AFTER_S)
        return self.delays[retry]
