"""Who delivers a message that reached several hosts: one claim per (destination, file).

A claim is a key of the claims bucket, `<dest>.<filename>`, created only if absent
(JetStream's expected-last-sequence 0), whose value is `<host> <stream sequence>`. The
host that holds it is the only one that writes the file into a local inbox; a
redelivery elsewhere is acked and dropped, and the holder, back after a crash,
finds its own claims and delivers what it had not written yet (docs/adr/0005).
"""

from __future__ import annotations

from dataclasses import dataclass

from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue


@dataclass(frozen=True)
class Claim:
    host: str
    seq: int


def key(dest: str, filename: str) -> str:
    return f"{dest}.{filename}"


def parse(value: bytes | None) -> Claim | None:
    host, _, seq = (value or b"").decode("utf-8", "replace").partition(" ")
    return Claim(host, int(seq)) if host and seq.isdigit() else None


async def claim(kv: KeyValue, dest: str, filename: str, host: str, seq: int) -> Claim:
    """Claim the file for `host`; the claim in force (this host's, or another's)."""
    try:
        await kv.create(key(dest, filename), f"{host} {seq}".encode())
        return Claim(host, seq)
    except KeyWrongLastSequenceError:
        # Held already: by another host, or by this one before a crash or a lost reply.
        entry = await kv.get(key(dest, filename))
        held = parse(entry.value)
        return held if held is not None else Claim("?", seq)
