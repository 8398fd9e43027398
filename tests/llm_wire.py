"""What the fake LLM server's wire formats share: the request summary they answer from,
the interface each implements, and the framing helpers (see llm_server.py)."""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Call:
    """A tool call the fake model makes; `arguments` is the JSON text it "wrote"."""

    id: str
    name: str
    arguments: str

    def arguments_value(self) -> Any:
        """The arguments for wires that carry an object: parsed when they parse, else the
        raw text (a real model's broken JSON reaches the client as broken as it was)."""
        try:
            return json.loads(self.arguments)
        except ValueError:
            return self.arguments


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict))
    return ""


def _tool_results(messages: list[dict[str, Any]]) -> list[str]:
    """The tool results that end the conversation, in every wire's shape: trailing
    `role: tool` messages (OpenAI, Ollama) or a user turn of `tool_result` blocks."""
    found: list[str] = []
    for message in reversed(messages):
        if message.get("role") != "tool":
            break
        found.insert(0, _text_of(message.get("content")))
    if found or not messages:
        return found
    last = messages[-1].get("content")
    if messages[-1].get("role") == "user" and isinstance(last, list):
        blocks = [b for b in last if isinstance(b, dict) and b.get("type") == "tool_result"]
        return [_text_of(b.get("content")) for b in blocks]
    return []


@dataclass(frozen=True)
class Exchange:
    """What a wire needs from the request to shape its answer."""

    model: str
    last_user: str
    words_in: int
    include_usage: bool
    tool_results: tuple[str, ...] = ()
    # The tool an Anthropic request forces the model to call (`tool_choice`): named, or
    # for `any` the last tool offered; None when the model may answer in text.
    forced_tool: str | None = None

    @classmethod
    def of(cls, body: Any) -> Exchange:
        body = body if isinstance(body, dict) else {}
        messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
        users = [_text_of(m.get("content")) for m in messages if m.get("role") == "user"]
        texts = [_text_of(m.get("content")) for m in messages] + [_text_of(body.get("system"))]
        options = body.get("stream_options") or {}
        choice = body.get("tool_choice") if isinstance(body.get("tool_choice"), dict) else {}
        offered = [t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)]
        forced = choice.get("name") if choice.get("type") == "tool" else None
        if choice.get("type") == "any" and offered:
            forced = offered[-1]
        return cls(
            model=str(body.get("model", "")),
            last_user=users[-1] if users else "",
            words_in=sum(len(t.split()) for t in texts),
            include_usage=bool(options.get("include_usage")),
            tool_results=tuple(_tool_results(messages)),
            forced_tool=forced if isinstance(forced, str) else None,
        )

    def echo(self) -> str:
        """The default answer: the last user message, or the tool results just received."""
        if self.tool_results:
            return "echo: tool said " + " | ".join(self.tool_results)
        return "echo: " + self.last_user


class Wire(ABC):
    """How one API frames streams, complete answers and errors. Frames are bytes."""

    content_type = "text/event-stream"
    streams_by_default = False
    call_id_prefix: str | None = "call_"  # None: this API's calls carry no id

    def opening(self, x: Exchange, input_tokens: int, cached: int = 0) -> list[bytes]:
        """Frames sent before the first text chunk; `cached` of the input tokens were
        read from a prompt cache."""
        return []

    @abstractmethod
    def reasoning(self, x: Exchange, text: str) -> list[bytes]:
        """The frames carrying the model's reasoning, sent before its answer."""

    @abstractmethod
    def delta(self, x: Exchange, text: str) -> bytes:
        """The frame carrying one text chunk."""

    @abstractmethod
    def calls(self, x: Exchange, calls: list[Call]) -> list[bytes]:
        """The frames carrying tool calls, after the text."""

    @abstractmethod
    def closing(
        self,
        x: Exchange,
        input_tokens: int,
        output_tokens: int,
        tools: bool = False,
        cached: int = 0,
    ) -> list[bytes]:
        """Frames after the last chunk (or call), ending with the stream's terminal event."""

    @abstractmethod
    def keep_alive(self) -> bytes:
        """A frame that keeps the connection busy and carries no part of the answer."""

    @abstractmethod
    def malformed(self) -> bytes:
        """A frame whose JSON is broken."""

    @abstractmethod
    def stream_error(self, kind: str, message: str) -> bytes:
        """The frame this API uses to report an error after a 200."""

    @abstractmethod
    def complete(
        self,
        x: Exchange,
        text: str,
        usage: tuple[int, int],
        calls: list[Call] | None = None,
        reasoning: str = "",
        cached: int = 0,
    ) -> dict[str, Any]:
        """The whole answer as one JSON body, for `"stream": false`."""

    @abstractmethod
    def error_body(self, code: int, message: str) -> dict[str, Any]:
        """The JSON body of an error status."""

    @abstractmethod
    def model_not_found(self, model: str) -> str:
        """The message this API gives for an unknown model."""


def sse(data: Any, event: str | None = None) -> bytes:
    """One Server-Sent Event."""
    head = f"event: {event}\n" if event else ""
    payload = data if isinstance(data, str) else json.dumps(data)
    return f"{head}data: {payload}\n\n".encode()


def chunks_of(text: str, size: int | None) -> list[str]:
    """Split `text` into stream chunks that concatenate back to it."""
    if size:
        return [text[i : i + size] for i in range(0, len(text), size)]
    return re.findall(r"\S+\s*|\s+", text)


def pieces(text: str, count: int = 3) -> list[str]:
    """`text` in up to `count` pieces, as APIs stream a tool call's argument JSON."""
    size = max(1, -(-len(text) // count))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]
