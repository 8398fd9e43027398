"""The built-in `echo` model: replies with the message it was given, offline (SPEC 5)."""

from __future__ import annotations

from collections.abc import Mapping

from loom.providers.base import Completion, Provider, Request, TextSink, Usage


class EchoProvider:
    """Replies with the last user turn verbatim; needs no settings and never fails."""

    def check(self) -> None:
        """Nothing to check: echo needs no key."""

    def complete(self, request: Request, on_text: TextSink) -> Completion:
        """Stream the last user turn back as one delta and return it, without token counts."""
        text = next((turn.content for turn in reversed(request.turns) if turn.role == "user"), "")
        if text:
            on_text(text)
        return Completion(text=text, usage=Usage())

    def close(self) -> None:
        """Nothing to release."""


def create(name: str, env: Mapping[str, str]) -> tuple[Provider, str]:
    """Factory for `echo` and `echo/<anything>`; the model id is `<anything>` or "echo"."""
    return EchoProvider(), name or "echo"
