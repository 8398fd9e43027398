"""Anthropic's Messages API (SPEC 5): `anthropic/<model>`, ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL.

The stream is SSE: message_start (input tokens), content_block_delta (text), message_delta
(output tokens), message_stop; an `error` event can arrive at any point after the 200.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from loom.errors import ProviderError
from loom.providers.base import Completion, Request, TextSink, Usage
from loom.providers.http import (
    HttpProvider,
    decode_object,
    message_of,
    stream_interrupted,
    token_count,
)
from loom.providers.sse import parse_sse

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
            "messages": [{"role": turn.role, "content": turn.content} for turn in request.turns],
        }
        if request.system:
            body["system"] = request.system
        return body

    def _read(self, lines: Iterator[str], on_text: TextSink) -> Completion:
        parts: list[str] = []
        input_tokens: int | None = None
        output_tokens: int | None = None
        for event, data in parse_sse(lines):
            payload = decode_object(data, self.name)
            kind = payload.get("type", event)
            if kind == "message_start":
                usage = _dict(_dict(payload.get("message")).get("usage"))
                input_tokens = token_count(usage.get("input_tokens"))
                output_tokens = token_count(usage.get("output_tokens"))
            elif kind == "content_block_delta":
                delta = _dict(payload.get("delta"))
                text = delta.get("text") if delta.get("type") == "text_delta" else None
                if isinstance(text, str) and text:
                    parts.append(text)
                    on_text(text)
            elif kind == "message_delta":
                counted = token_count(_dict(payload.get("usage")).get("output_tokens"))
                output_tokens = counted if counted is not None else output_tokens
            elif kind == "message_stop":
                usage_seen = Usage(input_tokens=input_tokens, output_tokens=output_tokens)
                return Completion(text="".join(parts), usage=usage_seen)
            elif kind == "error":
                raise self._event_error(payload)
            # ping, content_block_start/stop and event types added later are ignored,
            # as Anthropic's versioning policy asks of clients.
        raise stream_interrupted(self.name)

    def _event_error(self, payload: dict[str, Any]) -> ProviderError:
        kind = _dict(payload.get("error")).get("type")
        error_type, transient = _ERROR_TYPES.get(str(kind), ("server_error", True))
        return ProviderError(
            f"{self.name} reported {kind} mid-stream: {message_of(payload)}",
            error_type=error_type,
            transient=transient,
        )


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


create = AnthropicProvider.create
