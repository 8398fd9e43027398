"""The built-in `echo` model: replies with the message it was given, offline (SPEC 5).

With a schema it replies with the latest user turn that is JSON (so a correction is
answered with the message again): a message valid against the schema passes through
as the structured reply, any other fails as a reply that does not fit (docs/models.md).
"""

from __future__ import annotations

from collections.abc import Mapping

from loom.providers.base import Completion, Provider, Request, TextSink, Usage
from loom.providers.json_schema import parse_reply


class EchoProvider:
    """Replies with the last user turn verbatim; needs no settings and never fails."""

    def check(self) -> None:
        """Nothing to check: echo needs no key."""

    def complete(self, request: Request, on_text: TextSink) -> Completion:
        """Stream the last user turn back as one delta and return it, without token counts."""
        users = [turn.content for turn in request.turns if turn.role == "user"]
        if request.schema is not None:
            users = [text for text in users if _is_json(text)] or users
        text = users[-1] if users else ""
        if text:
            on_text(text)
        return Completion(text=text, usage=Usage())

    def close(self) -> None:
        """Nothing to release."""


def _is_json(text: str) -> bool:
    try:
        parse_reply(text)
    except ValueError:
        return False
    return True


def create(name: str, env: Mapping[str, str]) -> tuple[Provider, str]:
    """Factory for `echo` and `echo/<anything>`; the model id is `<anything>` or "echo"."""
    return EchoProvider(), name or "echo"
