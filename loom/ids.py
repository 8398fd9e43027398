"""ULID message ids, monotonic within a millisecond (SPEC 2).

Two ids made in the same millisecond by one process sort in creation order, so
filename order (`{ts}-{id}.msg`) is creation order.
"""

from __future__ import annotations

import os
import threading
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RANDOM_BITS = 80
_lock = threading.Lock()
_last_ms = -1
_last_random = 0


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_id(now_ms: int | None = None) -> tuple[int, str]:
    """Return `(ts_ms, ulid)`; the timestamp is the one encoded in the id."""
    global _last_ms, _last_random
    with _lock:
        ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        if ms <= _last_ms:
            # Same (or an earlier, after a clock step) millisecond: keep the previous
            # timestamp and bump the random part so the order stays strict.
            ms = _last_ms
            _last_random += 1
            if _last_random >> _RANDOM_BITS:
                ms += 1
                _last_random = int.from_bytes(os.urandom(10), "big") >> 1
        else:
            # Leave headroom so increments within one millisecond do not overflow.
            _last_random = int.from_bytes(os.urandom(10), "big") >> 1
        _last_ms = ms
        return ms, _encode(ms, 10) + _encode(_last_random, 16)
