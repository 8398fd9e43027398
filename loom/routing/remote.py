"""The router's other way out: destinations on other hosts, reached through a publisher.

The router knows only this interface; cluster mode (loom.cluster.publisher) provides
it, so routing imports nothing of NATS and a home without a cluster has none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol


class Remote(Protocol):
    """Publishes outbox files for destinations that are served elsewhere."""

    def destinations(self) -> Mapping[str, Sequence[str]]:
        """Destination name -> the hosts that serve it, for every remote destination."""
        ...

    def publish(self, dest: str, name: str, raw: bytes) -> None:
        """Send one file (bytes and name unchanged); raise OSError when it cannot now."""
        ...

    def pending(self, dest: str) -> int:
        """Messages published to `dest` and not yet taken by its hosts (the lag)."""
        ...

    def tick(self) -> None:
        """Called on every pump: heartbeats and re-reading the host's share."""
        ...
