"""The connection to NATS: the asyncio client kept inside this package (STYLE 6).

`connect`, `ensure_stream`, `ensure_bucket` are coroutines for the bridge (a process of
its own, one event loop); `Link` is the small sync facade the supervisor's router and
`loom cluster status` use: one event loop on one daemon thread, each call waited for
with a deadline.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Coroutine
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, KeyValueConfig, RetentionPolicy, StorageType
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue

from loom import settings
from loom.cluster.share import Share

T = TypeVar("T")

# How long a message stays in its stream, and a claim in the claims bucket: the window
# in which a host that claimed a message and went away can come back and deliver it.
KEEP_S = 7 * 24 * 3600.0
# Publishing deduplicates a resent file within this window (Nats-Msg-Id = filename);
# beyond it, the claims bucket still stops a second delivery.
DUPLICATE_WINDOW_S = 120.0
# A message fetched and not acked within this time goes to another bridge.
ACK_WAIT_S = 5.0
HEARTBEAT_TTL_S = 15.0
CONSUMER = "bridge"


class Unavailable(OSError):
    """NATS cannot be reached now; what was to be sent stays where it is."""


def options(share: Share, name: str) -> dict[str, Any]:
    """Client options: reconnect for ever, credentials file and CA when given."""
    opts: dict[str, Any] = {
        "servers": share.servers,
        "name": name,
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.5,
        "connect_timeout": 2,
    }
    if share.creds:
        opts["user_credentials"] = share.creds
    # Secrets come from the environment the supervisor started with, like API keys:
    # they are never written to cluster.json.
    if settings.NATS_TOKEN.get():
        opts["token"] = settings.NATS_TOKEN.get()
    elif settings.NATS_USER.get():
        opts["user"] = settings.NATS_USER.get()
        opts["password"] = settings.NATS_PASSWORD.get()
    if share.ca:
        opts["tls"] = ssl.create_default_context(cafile=share.ca)
    return opts


async def connect(share: Share, name: str) -> Client:
    return await nats.connect(**options(share, name))


async def ensure_stream(js: JetStreamContext, share: Share, dest: str) -> None:
    """The stream into `dest` and its shared durable pull consumer, made if missing."""
    stream = share.stream(dest)
    try:
        await js.stream_info(stream)
    except NotFoundError:
        await js.add_stream(
            name=stream,
            subjects=[share.subject(dest)],
            storage=StorageType.FILE,
            retention=RetentionPolicy.LIMITS,
            max_age=KEEP_S,
            duplicate_window=DUPLICATE_WINDOW_S,
            num_replicas=share.replicas,
        )
    try:
        await js.consumer_info(stream, CONSUMER)
    except NotFoundError:
        await js.add_consumer(
            stream,
            ConsumerConfig(
                durable_name=CONSUMER,
                ack_wait=ACK_WAIT_S,
                max_ack_pending=1024,
                filter_subject=share.subject(dest),
            ),
        )


async def ensure_bucket(
    js: JetStreamContext, bucket: str, ttl: float, replicas: int = 1
) -> KeyValue:
    try:
        return await js.key_value(bucket)
    except BucketNotFoundError:
        return await js.create_key_value(
            KeyValueConfig(
                bucket=bucket, history=1, ttl=ttl, storage=StorageType.FILE, replicas=replicas
            )
        )


class Link:
    """A NATS connection behind blocking calls; connects lazily, again after a failure."""

    def __init__(self, share: Share, name: str) -> None:
        self.share = share
        self.name = name
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._client: Client | None = None
        self.js: JetStreamContext | None = None

    def run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run `coro` on the link's loop; Unavailable when it fails or takes too long."""
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except FutureTimeout:
            future.cancel()
            raise Unavailable(f"NATS did not answer within {timeout:g} s") from None
        except (TimeoutError, nats.errors.Error, OSError) as exc:
            raise Unavailable(f"NATS: {type(exc).__name__}: {exc}") from None

    def jetstream(self, timeout: float = 3.0) -> JetStreamContext:
        if self.js is None:
            self._client = self.run(connect(self.share, self.name), timeout)
            self.js = self._client.jetstream(timeout=timeout)
        return self.js

    @property
    def max_payload(self) -> int:
        """The largest message the connected server takes, 0 before connecting."""
        return self._client.max_payload if self._client is not None else 0

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.is_connected

    def close(self) -> None:
        if self._client is not None:
            client, self._client, self.js = self._client, None, None
            try:
                self.run(client.close(), 2.0)
            except Unavailable:
                pass
        self._loop.call_soon_threadsafe(self._loop.stop)
