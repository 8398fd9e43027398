"""The OpenAI chat-completions wire format, shared by OpenAI, OpenRouter and compatible APIs.

POST {base}/chat/completions with `stream: true`; the reply is SSE chunks whose
`choices[0].delta.content` carry the text, then a `usage` chunk (asked for with
`stream_options.include_usage`), then `data: [DONE]`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from loom.errors import ProviderError
from loom.providers.base import Completion, Request, TextSink, Usage
from loom.providers.http import (
    HttpProvider,
    classify_status,
    decode_object,
    message_of,
    stream_interrupted,
    token_count,
)
from loom.providers.sse import DONE, parse_sse


class OpenAIWireProvider(HttpProvider):
    """A chat-completions API; subclasses only name the service and its settings."""

    path = "/chat/completions"
    # OpenAI's own API wants max_completion_tokens (its reasoning models refuse
    # max_tokens); most compatible services still read max_tokens.
    max_tokens_field: ClassVar[str] = "max_tokens"

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}", "Accept": "text/event-stream"}

    def _body(self, request: Request) -> dict[str, Any]:
        messages = [{"role": "system", "content": request.system}] if request.system else []
        messages += [{"role": turn.role, "content": turn.content} for turn in request.turns]
        return {
            "model": request.model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            self.max_tokens_field: request.max_tokens,
        }

    def _read(self, lines: Iterator[str], on_text: TextSink) -> Completion:
        parts: list[str] = []
        usage = Usage()
        for _event, data in parse_sse(lines):
            if data == DONE:
                return Completion(text="".join(parts), usage=usage)
            chunk = decode_object(data, self.name)
            if "error" in chunk:
                raise self._chunk_error(chunk["error"])
            text = _delta_text(chunk, self.name)
            if text:
                parts.append(text)
                on_text(text)
            if isinstance(chunk.get("usage"), dict):
                usage = Usage(
                    input_tokens=token_count(chunk["usage"].get("prompt_tokens")),
                    output_tokens=token_count(chunk["usage"].get("completion_tokens")),
                )
        raise stream_interrupted(self.name)

    def _chunk_error(self, error: Any) -> ProviderError:
        """An error sent inside the stream after a 200 (OpenRouter does this)."""
        code = error.get("code") if isinstance(error, dict) else None
        if isinstance(code, int) and 400 <= code < 600:
            error_type, transient = classify_status(code)
        else:
            error_type, transient = "server_error", True
        return ProviderError(
            f"{self.name} reported an error mid-stream: {message_of({'error': error})}",
            error_type=error_type,
            transient=transient,
        )


def _delta_text(chunk: dict[str, Any], source: str) -> str:
    choices = chunk.get("choices") or []
    if not isinstance(choices, list):
        raise _malformed(source, "'choices' is not a list")
    for choice in choices:
        if not isinstance(choice, dict) or choice.get("index", 0) != 0:
            continue
        delta = choice.get("delta") or {}
        content = delta.get("content") if isinstance(delta, dict) else None
        if content is not None and not isinstance(content, str):
            raise _malformed(source, "'delta.content' is not text")
        return content or ""
    return ""


def _malformed(source: str, detail: str) -> ProviderError:
    return ProviderError(
        f"{source} sent a malformed stream chunk: {detail}.",
        error_type="malformed_response",
        transient=False,
    )
