"""The source side of a cross-host edge: the router's `Remote` over JetStream.

Each file goes to the stream of its destination with `Nats-Msg-Id` = its filename and
its bytes unchanged; `publish` returns only once JetStream has stored it. While NATS
is away every call fails at once for a second at a time, so the supervisor's loop
is never held up, and the router keeps the files in the outbox until they go.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from loom.cluster import share as shares
from loom.cluster.link import (
    CONSUMER,
    HEARTBEAT_TTL_S,
    Link,
    Unavailable,
    ensure_bucket,
    ensure_stream,
)
from loom.errors import LoomError
from loom.store.home import now_iso

RETRY_AFTER_S = 1.0
# What the headers of a published message take of the server's max_payload besides
# the file name (NATS/1.0 line, the Nats-Msg-Id key, separators).
HEADER_ROOM = 64
# A first connection that fails costs the supervisor's loop its connect timeout: tried
# less often, so local edges keep flowing while NATS is away.
RECONNECT_AFTER_S = 5.0
BEAT_EVERY_S = 5.0
LAG_EVERY_S = 1.0


async def _lag(js: JetStreamContext, stream: str) -> int:
    """Messages of `stream` not yet acked by a bridge; 0 before any bridge made it
    (a missing stream is an answer, not NATS being away)."""
    try:
        info = await js.consumer_info(stream, CONSUMER)
    except NotFoundError:
        return 0
    return int(info.num_pending or 0) + int(info.num_ack_pending or 0)


class TooLarge(LoomError):
    """A file bigger than the NATS server takes: that one file is not routed (it stays
    in the outbox, the edge's errors say why), and the edge goes on with the next."""


class Publisher:
    """What the supervisor's router publishes to, for the host named in cluster.json."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.share = shares.read(home)
        self._mtime = self._stat()
        self.link: Link | None = None
        self._down_until = 0.0
        self._streams: set[str] = set()
        self._lag: dict[str, tuple[float, int]] = {}
        self._beat_at = 0.0

    def _stat(self) -> int:
        try:
            return os.stat(shares.share_path(self.home)).st_mtime_ns
        except FileNotFoundError:
            return 0

    def _link(self) -> Link:
        if self.share is None:
            raise Unavailable("this home is not in a cluster (no cluster.json)")
        if time.monotonic() < self._down_until:
            raise Unavailable("NATS unreachable; trying again shortly")
        if self.link is None:
            self.link = Link(self.share, f"loom {self.share.host} router")
        if self.link.js is not None and not self.link.connected:
            # The client reconnects by itself; asking now would only wait for a timeout.
            self._down_until = time.monotonic() + RETRY_AFTER_S
            raise Unavailable("NATS connection lost; reconnecting")
        return self.link

    def _jetstream(self, link: Link) -> JetStreamContext:
        try:
            return link.jetstream()
        except Unavailable:
            self._down_until = time.monotonic() + RECONNECT_AFTER_S
            raise

    def destinations(self) -> Mapping[str, Sequence[str]]:
        return self.share.remote if self.share is not None else {}

    def publish(self, dest: str, name: str, raw: bytes) -> None:
        link = self._link()
        assert self.share is not None
        try:
            js = self._jetstream(link)
            limit = link.max_payload
            if limit and len(raw) + len(name) + HEADER_ROOM > limit:
                raise TooLarge(
                    f"{len(raw)} bytes is over the NATS server's max_payload ({limit} bytes): "
                    "raise max_payload in its configuration; the file stays in the outbox"
                )
            if dest not in self._streams:
                link.run(ensure_stream(js, self.share, dest), 3.0)
                self._streams.add(dest)
            link.run(
                js.publish(
                    self.share.subject(dest),
                    raw,
                    timeout=2.0,
                    stream=self.share.stream(dest),
                    headers={"Nats-Msg-Id": name},
                ),
                3.0,
            )
        except Unavailable:
            self._down_until = max(self._down_until, time.monotonic() + RETRY_AFTER_S)
            raise
        # Until the lag is read again, count what this router added to it, so that a
        # burst stops at the limit instead of running a second past it.
        seen = self._lag.get(dest)
        if seen is not None:
            self._lag[dest] = (seen[0], seen[1] + 1)

    def pending(self, dest: str) -> int:
        """The consumer's lag (not yet delivered + delivered, not acked), a second old
        at most; 0 when NATS cannot say (publishing then finds out)."""
        now = time.monotonic()
        seen = self._lag.get(dest)
        if seen is not None and now - seen[0] < LAG_EVERY_S:
            return seen[1]
        lag = 0
        try:
            link = self._link()
            assert self.share is not None
            js = self._jetstream(link)
            lag = link.run(_lag(js, self.share.stream(dest)), 2.0)
        except Unavailable:
            self._down_until = max(self._down_until, time.monotonic() + RETRY_AFTER_S)
        except Exception:  # any other answer: publishing finds out what is wrong
            lag = 0
        self._lag[dest] = (now, lag)
        return lag

    def tick(self) -> None:
        mtime = self._stat()
        if mtime != self._mtime:
            self._mtime, self.share = mtime, shares.read(self.home)
            self._streams.clear()
            if self.link is not None:  # the servers or credentials may have changed
                self.link.close()
                self.link = None
        now = time.monotonic()
        if self.share is None or now - self._beat_at < BEAT_EVERY_S:
            return
        self._beat_at = now
        try:
            link = self._link()
            js = self._jetstream(link)
            kv = link.run(
                ensure_bucket(js, self.share.hosts_bucket, HEARTBEAT_TTL_S, self.share.replicas),
                2.0,
            )
            beat = {"ts": now_iso(), "runs": self.share.runs, "pid": os.getpid()}
            link.run(kv.put(self.share.host, json.dumps(beat).encode()), 2.0)
        except Unavailable:
            self._down_until = max(self._down_until, time.monotonic() + RETRY_AFTER_S)
        except Exception:
            pass  # a heartbeat is best effort: `loom cluster status` shows it missing

    def close(self) -> None:
        if self.link is not None:
            self.link.close()
