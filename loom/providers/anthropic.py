"""Anthropic's Messages API (SPEC 5): `anthropic/<model>`, ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL.

The stream is SSE: message_start (input tokens), content_block_delta (text), message_delta
(output tokens), message_stop; an `error` event can arrive at any point after the 200.

Tools go out with their `input_schema`. A tool call is a `tool_use` content block: its
content_block_start brings the id and name, `input_json_delta` events pieces of the
input's JSON, and the message stops with `stop_reason: tool_use`. Results go back as a
user turn of `tool_result` blocks naming their `tool_use_id`, after the assistant turn
replayed with its `tool_use` blocks.

A model that thinks sends `thinking` blocks (`thinking_delta` events) before its answer;
their text is kept apart from the answer. Usage counts the prompt in three parts (fresh,
read from the prompt cache, written to it); loom's input count is their sum.
"""

from __future__ import annotations

from typing import Any

from loom.errors import ProviderError
from loom.providers.base import Completion, Request, TextSink, ToolCall, Turn, Usage
from loom.providers.http import (
    HttpProvider,
    decode_object,
    message_of,
    stream_interrupted,
    token_count,
)
from loom.providers.response import ResponseReader
from loom.providers.sse import parse_sse
from loom.providers.structured import answer_from_reply_tool, anthropic_fields
from loom.providers.tool_calls import PendingCalls, arguments_object, arguments_text, new_call_id

API_VERSION = "2023-06-01"

# Anthropic's error types (https://docs.anthropic.com/en/api/errors) as loom labels.
_ERROR_TYPES = {
    "overloaded_error": ("overloaded", True),
    "rate_limit_error": ("rate_limited", True),
    "api_error": ("server_error", True),
    "timeout_error": ("timeout", True),
    "invalid_request_error": ("bad_request", False),
    "request_too_large": ("bad_request", False),
    "authentication_error": ("auth", False),
    "permission_error": ("forbidden", False),
    "not_found_error": ("not_found", False),
}


class AnthropicProvider(HttpProvider):
    """Claude models through the Messages API."""

    name = "Anthropic"
    prefix = "anthropic"
    model_form = "anthropic/<model>"
    key_variable = "ANTHROPIC_API_KEY"
    base_url_variable = "ANTHROPIC_BASE_URL"
    default_base_url = "https://api.anthropic.com"
    path = "/v1/messages"
    models_path = "/v1/models"

    def _headers(self) -> dict[str, str]:
        return {
            "x-api-key": self._api_key,
            "anthropic-version": API_VERSION,
            "Accept": "text/event-stream",
        }

    def _body(self, request: Request) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens,
            "stream": True,
            "messages": [_message(turn) for turn in request.turns],
            **request.options,
        }
        if request.system:
            body["system"] = request.system
        if request.tools:
            body["tools"] = [
                {
                    "name": tool.name,
                    "description": tool.description,
                    "input_schema": dict(tool.input_schema),
                }
                for tool in request.tools
            ]
        structured = anthropic_fields(request)
        if structured:
            body["tools"] = [*body.get("tools", []), structured["tool"]]
            body["tool_choice"] = structured["tool_choice"]
        return body

    def _read(self, reply: ResponseReader, on_text: TextSink) -> Completion:
        parts: list[str] = []
        thinking: list[str] = []
        calls = PendingCalls()
        usage: dict[str, Any] = {}
        for event, data in parse_sse(reply.batches()):
            payload = decode_object(data, self.name, self._secrets)
            kind = payload.get("type", event)
            index = payload.get("index")
            index = index if isinstance(index, int) else 0
            if kind == "message_start":
                usage.update(_dict(_dict(payload.get("message")).get("usage")))
            elif kind == "content_block_start":
                block = _dict(payload.get("content_block"))
                if block.get("type") == "tool_use":
                    reply.progressed = True
                    calls.start(index, _str(block.get("id")), _str(block.get("name")))
            elif kind == "content_block_delta":
                delta = _dict(payload.get("delta"))
                if delta.get("type") == "input_json_delta":
                    reply.progressed = True
                    calls.extend(index, _str(delta.get("partial_json")) or "")
                elif delta.get("type") == "thinking_delta":
                    reply.progressed = True
                    thinking.append(_str(delta.get("thinking")) or "")
                text = delta.get("text") if delta.get("type") == "text_delta" else None
                if isinstance(text, str) and text:
                    parts.append(text)
                    on_text(text)
            elif kind == "message_delta":
                # Cumulative counts; newer servers repeat the input counts here.
                counted = _dict(payload.get("usage"))
                usage.update({k: v for k, v in counted.items() if token_count(v) is not None})
            elif kind == "message_stop":
                return answer_from_reply_tool(
                    Completion(
                        text="".join(parts),
                        usage=_usage(usage),
                        tool_calls=calls.done(),
                        reasoning="".join(thinking),
                    )
                )
            elif kind == "error":
                raise self._event_error(payload)
            # ping, content_block_stop, signature_delta and event types added later are
            # ignored, as Anthropic's versioning policy asks of clients.
        raise stream_interrupted(self.name)

    def _whole(self, payload: dict[str, Any]) -> Completion:
        if payload.get("type") == "error":
            raise self._event_error(payload)
        if not isinstance(payload.get("content"), list):
            raise ProviderError(
                f"{self.name} sent a reply without 'content'.",
                error_type="malformed_response",
                transient=False,
            )
        texts: list[str] = []
        thinking: list[str] = []
        calls: list[ToolCall] = []
        for block in map(_dict, payload["content"]):
            if block.get("type") == "text" and isinstance(block.get("text"), str):
                texts.append(block["text"])
            elif block.get("type") == "thinking" and isinstance(block.get("thinking"), str):
                thinking.append(block["thinking"])
            elif block.get("type") == "tool_use":
                calls.append(
                    ToolCall(
                        id=_str(block.get("id")) or new_call_id(),
                        name=_str(block.get("name")) or "",
                        arguments=arguments_text(block.get("input")),
                    )
                )
        return answer_from_reply_tool(
            Completion(
                text="".join(texts),
                usage=_usage(_dict(payload.get("usage"))),
                tool_calls=tuple(calls),
                reasoning="".join(thinking),
            )
        )

    def _event_error(self, payload: dict[str, Any]) -> ProviderError:
        kind = _dict(payload.get("error")).get("type")
        error_type, transient = _ERROR_TYPES.get(str(kind), ("server_error", True))
        return ProviderError(
            f"{self.name} reported {kind} mid-stream: {message_of(payload, self._secrets)}",
            error_type=error_type,
            transient=transient,
        )


def _message(turn: Turn) -> dict[str, Any]:
    """One turn as a Messages API message; tool results travel in a user turn."""
    if turn.tool_results:
        results = []
        for result in turn.tool_results:
            block: dict[str, Any] = {
                "type": "tool_result",
                "tool_use_id": result.call_id,
                "content": result.content,
            }
            if result.is_error:
                block["is_error"] = True
            results.append(block)
        return {"role": "user", "content": results}
    if turn.tool_calls:
        blocks: list[dict[str, Any]] = []
        if turn.content:
            blocks.append({"type": "text", "text": turn.content})
        blocks += [
            {
                "type": "tool_use",
                "id": call.id,
                "name": call.name,
                "input": arguments_object(call.arguments),
            }
            for call in turn.tool_calls
        ]
        return {"role": "assistant", "content": blocks}
    return {"role": turn.role, "content": turn.content}


def _usage(usage: dict[str, Any]) -> Usage:
    """Loom's counts from a Messages API `usage`: the input is the fresh tokens plus those
    read from and written to the prompt cache (each reported apart)."""
    fresh = token_count(usage.get("input_tokens"))
    read = token_count(usage.get("cache_read_input_tokens"))
    written = token_count(usage.get("cache_creation_input_tokens"))
    counted = [n for n in (fresh, read, written) if n is not None]
    return Usage(
        input_tokens=sum(counted) if counted else None,
        output_tokens=token_count(usage.get("output_tokens")),
        cache_read_tokens=read,
        cache_write_tokens=written,
    )


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


create = AnthropicProvider.create
