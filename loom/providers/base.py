"""The provider interface every model backend implements (SPEC 5)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

TextSink = Callable[[str], None]


@dataclass(frozen=True)
class Turn:
    """One turn of a conversation sent to the model."""

    role: str  # "user" or "assistant"
    content: str


@dataclass(frozen=True)
class Request:
    """Everything a provider needs for one completion."""

    model: str  # the provider's own model id, e.g. "gpt-4o-mini" (prefix stripped)
    turns: tuple[Turn, ...]
    system: str | None = None
    max_tokens: int = 4096


@dataclass(frozen=True)
class Usage:
    input_tokens: int | None = None
    output_tokens: int | None = None


@dataclass(frozen=True)
class Completion:
    """The final answer of one call: the whole text and token usage when reported."""

    text: str
    usage: Usage = field(default_factory=Usage)


class Provider(Protocol):
    """A model backend.

    `complete` streams text deltas to `on_text` as they arrive and returns the whole
    completion. It raises `loom.errors.ProviderError` (classified transient or
    permanent) and never retries by itself: retrying is the runner's job.
    """

    def check(self) -> None:
        """Raise MissingApiKey when a needed setting is absent (before any claim)."""

    def complete(self, request: Request, on_text: TextSink) -> Completion: ...

    def close(self) -> None: ...


# A factory builds a provider from the model string's remainder (after "vendor/")
# and the environment; it must not read os.environ itself.
ProviderFactory = Callable[[str, Mapping[str, str]], tuple[Provider, str]]
