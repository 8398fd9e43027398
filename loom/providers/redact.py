"""Keeping API keys out of every text loom writes (SPEC 5: "API keys never appear in logs,
state files, crash records or error messages")."""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "[redacted]"
# A cut key is still a leak: any run of this many characters or more that starts a key
# is taken for the key. Shorter runs are too common in ordinary text to mean anything,
# and so is a shorter key: it is redacted only where it stands as a whole token.
MIN_FRAGMENT = 8
# What a key is made of; a short key counts as a token only between other characters.
_KEY_CHARACTER = r"[A-Za-z0-9_-]"


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with each secret replaced: every occurrence of a secret of MIN_FRAGMENT or
    more characters and every run of that many or more that is the start of one; a
    shorter secret only where it is a whole token (so the key `x` leaves "exceeds" alone).
    """
    for secret in secrets:
        if not secret:
            continue
        if len(secret) >= MIN_FRAGMENT:
            text = _redact_prefixes(text.replace(secret, REDACTED), secret)
        else:
            whole = rf"(?<!{_KEY_CHARACTER}){re.escape(secret)}(?!{_KEY_CHARACTER})"
            text = re.sub(whole, REDACTED, text)
    return text


def _redact_prefixes(text: str, secret: str) -> str:
    head = secret[:MIN_FRAGMENT]
    parts: list[str] = []
    start = 0
    found = text.find(head)
    while found != -1:
        end = found + MIN_FRAGMENT
        while end < len(text) and end - found < len(secret) and text[end] == secret[end - found]:
            end += 1
        parts += [text[start:found], REDACTED]
        start = end
        found = text.find(head, end)
    return "".join(parts) + text[start:] if parts else text
