"""Keeping API keys out of every text loom writes (SPEC 5: "API keys never appear in logs,
state files, crash records or error messages")."""

from __future__ import annotations

from collections.abc import Iterable

REDACTED = "[redacted]"
# A cut key is still a leak: any run of this many characters or more that starts a key
# is taken for the key. Shorter runs are too common in ordinary text to mean anything.
MIN_FRAGMENT = 8


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with each secret replaced, whole or cut: every occurrence of a secret, and
    every run of MIN_FRAGMENT or more characters that is the start of one."""
    for secret in secrets:
        if not secret:
            continue
        text = text.replace(secret, REDACTED)
        if len(secret) >= MIN_FRAGMENT:
            text = _redact_prefixes(text, secret)
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
