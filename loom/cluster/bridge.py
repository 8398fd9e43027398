"""A bridge: pulls the messages for one destination from JetStream into its local inbox.

One per (destination, host), run by the supervisor as the process folder
`pipes/bridge~nats→<dest>` (restarted by the same policy as any child). All hosts of a
destination pull from one durable consumer (competing consumers, so they share the
work). For each message: claim it (loom.cluster.claims); if this host holds the claim
and the file is in none of the inbox's folders, write it there atomically
(store.queue.deliver_copy); only then ack. The bridge takes more only while the inbox
holds fewer than WINDOW messages, so a busy host leaves the rest to the others.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, NotFoundError
from nats.js.kv import KeyValue

from loom.cluster import claims
from loom.cluster import share as shares
from loom.cluster.link import CONSUMER, KEEP_S, connect, ensure_bucket, ensure_stream
from loom.errors import ConfigError
from loom.routing.endpoints import locate
from loom.store import home as homes
from loom.store.home import ProcessDir, now_iso
from loom.store.logs import Log
from loom.store.queue import (
    count_messages,
    deliver_copy,
    holds,
    is_message_name,
)

WINDOW = 16


class Bridge:
    def __init__(self, home: Path, share: shares.Share, dest: str, log: Log) -> None:
        self.home, self.share, self.dest, self.log = home, share, dest, log
        self.target = locate(home, dest)
        self.stop = asyncio.Event()

    async def run(self) -> None:
        while not self.stop.is_set():
            try:
                await self._session()
            except Exception as exc:  # NATS away or restarting: connect again
                self.log.warning("nats unavailable; retrying", error=f"{type(exc).__name__}: {exc}")
                try:
                    await asyncio.wait_for(self.stop.wait(), 1.0)
                except TimeoutError:
                    pass

    async def _session(self) -> None:
        nc = await connect(self.share, f"loom {self.share.host} bridge {self.dest}")
        try:
            js = nc.jetstream(timeout=3.0)
            await ensure_stream(js, self.share, self.dest)
            kv = await ensure_bucket(js, self.share.claims_bucket, KEEP_S, self.share.replicas)
            await self._recover(js, kv)
            sub = await js.pull_subscribe_bind(CONSUMER, self.share.stream(self.dest))
            self.log.info("bridge pulling", stream=self.share.stream(self.dest))
            inbox = self.target.inbox
            while not self.stop.is_set():
                room = WINDOW - count_messages(inbox)
                if room <= 0:
                    await asyncio.sleep(0.05)
                    continue
                try:
                    batch = await sub.fetch(room, timeout=1.0)
                except (NatsTimeout, TimeoutError):
                    continue
                for msg in batch:
                    await self._take(kv, msg)
        finally:
            await nc.close()

    async def _take(self, kv: KeyValue, msg: Msg) -> None:
        name = (msg.headers or {}).get("Nats-Msg-Id", "")
        seq = msg.metadata.sequence.stream
        if not is_message_name(name) or "/" in name:
            # Not published by a loom router: nothing to deliver it as. Said once, then
            # taken off the consumer for good (it stays in the stream for inspection).
            self.log.error("not a loom message; left in the stream", seq=seq, msg_id=name[:200])
            await msg.term()
            return
        held = await claims.claim(kv, self.dest, name, self.share.host, seq)
        if held.host != self.share.host:
            self.log.info("claimed elsewhere; dropped", msg=name, host=held.host)
        else:
            self._write(name, msg.data)
        await msg.ack()

    def _write(self, name: str, raw: bytes) -> None:
        inbox = self.target.inbox
        if not inbox.is_dir():
            self.target.create()
        if holds(inbox, name):
            return
        deliver_copy(inbox, name, raw)
        self.log.info("received", msg=name, to=self.dest)

    async def _recover(self, js: JetStreamContext, kv: KeyValue) -> None:
        """Deliver what this host claimed and did not write before it went away."""
        prefix = self.dest + "."
        # A watch on `<dest>.>` lists this destination's claims, filtered by the server
        # (KeyValue.keys' own filters match substrings on the client, after fetching all).
        watcher = await kv.watch(prefix + ">", ignore_deletes=True, meta_only=True)
        keys = []
        try:
            async for entry in watcher:
                if entry is None:
                    break
                keys.append(entry.key)
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]
        for key in keys:
            name = key[len(prefix) :]
            if holds(self.target.inbox, name):
                continue
            try:
                held = claims.parse((await kv.get(key)).value)
            except KeyNotFoundError:
                continue
            if held is None or held.host != self.share.host:
                continue
            try:
                stored = await js.get_msg(self.share.stream(self.dest), held.seq)
            except NotFoundError:
                self.log.error("claimed message gone from the stream", msg=name, seq=held.seq)
                continue
            self._write(name, stored.data or b"")
            self.log.info("recovered", msg=name)


def serve(name: str) -> None:
    """Run the bridge process `name` (`bridge~nats→<dest>`) until SIGTERM."""
    home = homes.home()
    share = shares.read(home)
    dest = shares.bridged(name)
    if share is None or dest is None:
        raise ConfigError(f"{name}: this home is not in a cluster (run loom up --host)")
    proc = ProcessDir(home, "pipes", name)
    owner = proc.own()
    log = Log(proc.logs, name)
    bridge = Bridge(home, share, dest, log)
    proc.write("started_at", now_iso())
    proc.set_status("running")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, bridge.stop.set)
        await bridge.run()

    try:
        asyncio.run(main())
    finally:
        if proc.status not in ("dead", "restarting", "pending"):
            proc.set_status("stopped")
        proc.write("pid", "")
        proc.write("stopped_at", now_iso())
        owner.release()
