"""ULID message ids, monotonic within a millisecond (SPEC 2).

Two ids made in the same millisecond by one process sort in creation order, so
filename order (`{ts}-{id}.msg`) is creation order.
"""

from __future__ import annotations

import os
import threading
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Two Crockford characters per 10 bits: an id is 13 table lookups instead of 26
# shifts, and `loom pipe run` makes an id per event.
_PAIRS = tuple(a + b for a in _CROCKFORD for b in _CROCKFORD)
_RANDOM_BITS = 80
# Ids made in one millisecond differ only in the low bits of the random part: the
# first 22 characters (timestamp and the random part above these bits) are reused.
_LOW_BITS = 20
_LOW_MASK = (1 << _LOW_BITS) - 1
_lock = threading.Lock()
_last_ms = -1
_last_random = 0
_prefix_key: tuple[int, int] = (-1, -1)
_prefix = ""


def _encode(value: int, length: int) -> str:
    """The low `length * 5` bits of `value` in Crockford base32; `length` is even."""
    return "".join(_PAIRS[(value >> shift) & 1023] for shift in range(length * 5 - 10, -1, -10))


def _fresh_random() -> int:
    # Leave headroom so increments within one millisecond do not overflow.
    return int.from_bytes(os.urandom(10), "big") >> 1


def new_id(now_ms: int | None = None) -> tuple[int, str]:
    """Return `(ts_ms, ulid)`; the timestamp is the one encoded in the id."""
    return _make(1, now_ms)[0]


def new_ids(count: int) -> list[tuple[int, str]]:
    """`count` ids as `new_id` would make them one after the other, in creation order,
    for one reading of the clock (a batch of input lines gets its ids at once)."""
    return _make(count, None)


def _make(count: int, now_ms: int | None) -> list[tuple[int, str]]:
    global _last_ms, _last_random, _prefix_key, _prefix
    made: list[tuple[int, str]] = []
    with _lock:
        now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        last_ms, random, key, prefix = _last_ms, _last_random, _prefix_key, _prefix
        for _ in range(count):
            ms = now
            if ms <= last_ms:
                # Same (or an earlier, after a clock step) millisecond: keep the previous
                # timestamp and bump the random part so the order stays strict.
                ms = last_ms
                random += 1
                if random >> _RANDOM_BITS:
                    ms += 1
                    random = _fresh_random()
            else:
                random = _fresh_random()
            last_ms = ms
            if (ms, random >> _LOW_BITS) != key:
                key = (ms, random >> _LOW_BITS)
                prefix = _encode(ms, 10) + _encode(key[1], 12)
            low = random & _LOW_MASK
            made.append((ms, prefix + _PAIRS[low >> 10] + _PAIRS[low & 1023]))
        _last_ms, _last_random, _prefix_key, _prefix = last_ms, random, key, prefix
    return made
