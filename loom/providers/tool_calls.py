"""Tool calls as the wire formats carry them: assembled from streamed pieces, and turned
back into the JSON objects some APIs want when a conversation is replayed (SPEC 12)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from loom.providers.base import Request, ToolCall, ToolResult, ToolSpec
from loom.store.files import load_json


def new_call_id() -> str:
    """An id for a call the provider sent without one (Ollama's API has none)."""
    return "call_" + os.urandom(6).hex()


def arguments_text(value: Any) -> str:
    """A model's arguments as JSON text: objects are serialised, text is kept verbatim so
    that broken JSON reaches the runner as the model wrote it."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False)


def arguments_object(text: str) -> dict[str, Any]:
    """The arguments of an earlier call as an object, for APIs that replay them so.

    Arguments that were not a JSON object (the model's mistake, already answered with an
    error result) are replayed as `{}`: those APIs accept nothing else.
    """
    try:
        value = load_json(text) if text.strip() else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def arguments_replay(text: str) -> str:
    """The arguments of an earlier call as JSON text, for APIs that replay them so.

    Text that is a JSON object goes back as the model wrote it; anything else (already
    answered with an error result that quotes it) goes back as `{}`, since servers
    that parse the conversation (llama.cpp) reject the whole request otherwise.
    """
    try:
        value = load_json(text) if text.strip() else {}
    except ValueError:
        return "{}"
    return text if isinstance(value, dict) else "{}"


def function_tools(tools: tuple[ToolSpec, ...]) -> list[dict[str, Any]]:
    """Tools in the OpenAI `function` shape, which Ollama's chat API reads too."""
    return [
        {
            "type": "function",
            "function": {
                "name": tool.name,
                "description": tool.description,
                "parameters": dict(tool.input_schema),
            },
        }
        for tool in tools
    ]


@dataclass(frozen=True)
class ChatDialect:
    """What the chat-message APIs (OpenAI's and Ollama's) spell differently in a replayed
    conversation: a tool result, a tool call, and an assistant turn with no text."""

    result: Callable[[ToolResult], dict[str, Any]]
    call: Callable[[ToolCall], dict[str, Any]]
    null_content: bool = False  # whether a turn of only tool calls has `content: null`


def chat_messages(request: Request, dialect: ChatDialect) -> list[dict[str, Any]]:
    """The request's system prompt and turns as chat messages; a tool turn becomes one
    `role: tool` message per result."""
    messages: list[dict[str, Any]] = (
        [{"role": "system", "content": request.system}] if request.system else []
    )
    for turn in request.turns:
        if turn.tool_results:
            messages += [dialect.result(result) for result in turn.tool_results]
        elif turn.tool_calls:
            content = (turn.content or None) if dialect.null_content else turn.content
            calls = [dialect.call(call) for call in turn.tool_calls]
            messages.append({"role": "assistant", "content": content, "tool_calls": calls})
        else:
            messages.append({"role": turn.role, "content": turn.content})
    return messages


def chat_body(request: Request, dialect: ChatDialect, **fields: Any) -> dict[str, Any]:
    """A streamed chat request's body: the model, the messages, the API's own `fields`
    (its token limit, stream options) and the tools when there are any."""
    body: dict[str, Any] = {
        "model": request.model,
        "messages": chat_messages(request, dialect),
        "stream": True,
        **fields,
    }
    if request.tools:
        body["tools"] = function_tools(request.tools)
    return body


@dataclass
class _Parts:
    id: str = ""
    name: str = ""
    pieces: list[str] = field(default_factory=list)


class PendingCalls:
    """Tool calls arriving in pieces, keyed by the stream's index for each call."""

    def __init__(self) -> None:
        self._calls: dict[int, _Parts] = {}

    def start(self, index: int, call_id: str | None, name: str | None) -> None:
        """Note a call's id and name; the first non-empty value of each is kept."""
        parts = self._calls.setdefault(index, _Parts())
        parts.id = parts.id or (call_id or "")
        parts.name = parts.name or (name or "")

    def extend(self, index: int, piece: str) -> None:
        """Add a piece of the call's argument text."""
        self._calls.setdefault(index, _Parts()).pieces.append(piece)

    def done(self) -> tuple[ToolCall, ...]:
        """The calls in stream order, each with an id."""
        return tuple(
            ToolCall(id=p.id or new_call_id(), name=p.name, arguments="".join(p.pieces))
            for _, p in sorted(self._calls.items())
        )
