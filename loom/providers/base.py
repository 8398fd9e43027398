"""The provider interface every model backend implements (SPEC 5), tool calling included
(SPEC 12)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

TextSink = Callable[[str], None]


@dataclass(frozen=True)
class ToolSpec:
    """A tool offered to the model: what its `describe` printed."""

    name: str
    description: str
    input_schema: Mapping[str, Any]  # a JSON Schema with "type": "object"


@dataclass(frozen=True)
class ToolCall:
    """The model's request to run one tool."""

    id: str  # the provider's call id; results are matched to calls by it
    name: str
    arguments: str  # raw JSON text from the model, possibly invalid


@dataclass(frozen=True)
class ToolResult:
    """What one tool call gave back, as text for the model."""

    call_id: str
    name: str
    content: str
    is_error: bool = False


@dataclass(frozen=True)
class Turn:
    """One turn of a conversation sent to the model.

    An assistant turn may carry the tool calls it made; the turn after it has role
    "tool" and carries their results (its `content` is unused).
    """

    role: str  # "user", "assistant" or "tool"
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_results: tuple[ToolResult, ...] = ()
    # What the model reasoned before this answer; recorded, never sent back to it.
    reasoning: str = ""


@dataclass(frozen=True)
class Request:
    """Everything a provider needs for one completion."""

    model: str  # the provider's own model id, e.g. "gpt-4o-mini" (prefix stripped)
    turns: tuple[Turn, ...]
    system: str | None = None
    max_tokens: int = 4096
    tools: tuple[ToolSpec, ...] = ()  # offered to the model; none: a plain chat
    # The JSON Schema the answer must follow (structured output); None: free text.
    schema: Mapping[str, Any] | None = None
    # Model options (`-o temperature 0.2`), sent in the wire's own field; the token
    # limit is `max_tokens` above (loom.providers.options).
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Usage:
    """Token counts as the provider reported them; None when it did not.

    `input_tokens` counts the whole prompt, cached parts included, on every wire format
    (Anthropic reports the cached parts apart; they are added in). `cache_read_tokens`
    and `cache_write_tokens` say how much of it was read from or written to a prompt cache.
    """

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None


@dataclass(frozen=True)
class Completion:
    """The final answer of one call: the whole text, token usage when reported, the
    tools the model asked to run (empty when it answered), and the model's reasoning
    when it sent some apart from the answer (kept out of `text`)."""

    text: str
    usage: Usage = field(default_factory=Usage)
    tool_calls: tuple[ToolCall, ...] = ()
    reasoning: str = ""


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
