"""The OpenAI chat-completions wire format, shared by OpenAI, OpenRouter and compatible APIs.

POST {base}/chat/completions with `stream: true`; the reply is SSE chunks whose
`choices[0].delta.content` carry the text, then a `usage` chunk (asked for with
`stream_options.include_usage`), then `data: [DONE]`.

Tools go out as `tools: [{"type": "function", "function": {...}}]`. A tool call streams
as `delta.tool_calls` fragments: the first for an `index` brings its `id` and
`function.name`, later ones pieces of `function.arguments`. Results go back as one
`role: tool` message per call, naming its `tool_call_id`.

Compatible servers that separate a model's reasoning from its answer (llama.cpp, vLLM,
DeepSeek, OpenRouter) stream it as `delta.reasoning_content` or `delta.reasoning`; it is
kept apart from the text.
"""

from __future__ import annotations

from typing import Any, ClassVar

from loom.errors import ProviderError
from loom.providers.base import Completion, Request, TextSink, ToolCall, Usage
from loom.providers.http import (
    HttpProvider,
    classify_status,
    decode_object,
    message_of,
    stream_interrupted,
    token_count,
)
from loom.providers.response import ResponseReader
from loom.providers.sse import DONE, parse_sse
from loom.providers.structured import response_format
from loom.providers.tool_calls import (
    ChatDialect,
    PendingCalls,
    arguments_replay,
    arguments_text,
    chat_body,
    new_call_id,
)


class OpenAIWireProvider(HttpProvider):
    """A chat-completions API; subclasses only name the service and its settings."""

    path = "/chat/completions"
    # OpenAI's own API wants max_completion_tokens (its reasoning models refuse
    # max_tokens); most compatible services still read max_tokens.
    max_tokens_field: ClassVar[str] = "max_tokens"

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}", "Accept": "text/event-stream"}

    def _body(self, request: Request) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "stream_options": {"include_usage": True},
            self.max_tokens_field: request.max_tokens,
        }
        if request.schema is not None:
            fields["response_format"] = response_format(request.schema)
        return chat_body(request, _DIALECT, **fields, **request.options)

    def _read(self, reply: ResponseReader, on_text: TextSink) -> Completion:
        parts: list[str] = []
        reasoning: list[str] = []
        calls = PendingCalls()
        usage = Usage()
        secrets = self._secrets
        for _event, data in parse_sse(reply.batches()):
            if data == DONE:
                return Completion(
                    text="".join(parts),
                    usage=usage,
                    tool_calls=calls.done(),
                    reasoning="".join(reasoning),
                )
            chunk = decode_object(data, self.name, secrets)
            if "error" in chunk:
                raise self._chunk_error(chunk["error"])
            if "usage" in chunk and isinstance(chunk["usage"], dict):
                usage = _usage(chunk["usage"])
            delta = _first_choice(chunk, "delta", self.name)
            if not delta:
                continue
            text = _text(delta, self.name)
            if text:
                parts.append(text)
                on_text(text)
            if delta.keys() <= _TEXT_ONLY:
                continue  # text alone: nearly every event of a stream
            thought = _reasoning(delta)
            if thought:
                reply.progressed = True
                reasoning.append(thought)
            for fragment in _list(delta.get("tool_calls"), "delta.tool_calls", self.name):
                reply.progressed = True
                index = fragment.get("index")
                index = index if isinstance(index, int) else 0
                calls.start(index, *_id_and_name(fragment))
                arguments = _dict(fragment.get("function")).get("arguments")
                if isinstance(arguments, str) and arguments:
                    calls.extend(index, arguments)
        raise stream_interrupted(self.name)

    def _whole(self, payload: dict[str, Any]) -> Completion:
        if "error" in payload:
            raise self._chunk_error(payload["error"])
        if not payload.get("choices"):
            raise _malformed(self.name, "a reply without 'choices'")
        message = _first_choice(payload, "message", self.name)
        calls = tuple(
            _whole_call(call)
            for call in _list(message.get("tool_calls"), "message.tool_calls", self.name)
        )
        return Completion(
            text=_text(message, self.name),
            usage=_usage(_dict(payload.get("usage"))),
            tool_calls=calls,
            reasoning=_reasoning(message),
        )

    def _chunk_error(self, error: Any) -> ProviderError:
        """An error sent inside the stream after a 200 (OpenRouter does this)."""
        code = error.get("code") if isinstance(error, dict) else None
        if isinstance(code, int) and 400 <= code < 600:
            error_type, transient = classify_status(code)
        else:
            error_type, transient = "server_error", True
        message = message_of({"error": error}, self._secrets)
        return ProviderError(
            f"{self.name} reported an error mid-stream: {message}",
            error_type=error_type,
            transient=transient,
        )


# The keys of a delta that carries no reasoning and no tool call.
_TEXT_ONLY = frozenset(("content", "role"))

# OpenAI's schema: content may be null when the turn is only tool calls.
_DIALECT = ChatDialect(
    result=lambda result: {
        "role": "tool",
        "tool_call_id": result.call_id,
        "content": result.content,
    },
    call=lambda call: {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": arguments_replay(call.arguments)},
    },
    null_content=True,
)


def _first_choice(chunk: dict[str, Any], key: str, source: str) -> dict[str, Any]:
    """`choices[0][key]` (a delta or a message), or {} when this chunk has none."""
    choices = chunk.get("choices") or []
    if not isinstance(choices, list):
        raise _malformed(source, "'choices' is not a list")
    for choice in choices:
        if isinstance(choice, dict) and choice.get("index", 0) == 0:
            return _dict(choice.get(key))
    return {}


def _text(delta: dict[str, Any], source: str) -> str:
    content = delta.get("content")
    if content is not None and not isinstance(content, str):
        raise _malformed(source, "'content' is not text")
    return content or ""


def _reasoning(delta: dict[str, Any]) -> str:
    """The reasoning in a delta or message: `reasoning_content` (llama.cpp, vLLM, DeepSeek)
    or `reasoning` (OpenRouter, newer vLLM)."""
    for key in ("reasoning_content", "reasoning"):
        value = delta.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def _id_and_name(fragment: dict[str, Any]) -> tuple[str | None, str | None]:
    call_id, name = fragment.get("id"), _dict(fragment.get("function")).get("name")
    return (
        call_id if isinstance(call_id, str) else None,
        name if isinstance(name, str) else None,
    )


def _whole_call(call: dict[str, Any]) -> ToolCall:
    call_id, name = _id_and_name(call)
    arguments = arguments_text(_dict(call.get("function")).get("arguments"))
    return ToolCall(id=call_id or new_call_id(), name=name or "", arguments=arguments)


def _usage(usage: dict[str, Any]) -> Usage:
    # prompt_tokens counts the cached part too; the details say how much of it was cached.
    return Usage(
        input_tokens=token_count(usage.get("prompt_tokens")),
        output_tokens=token_count(usage.get("completion_tokens")),
        cache_read_tokens=token_count(
            _dict(usage.get("prompt_tokens_details")).get("cached_tokens")
        ),
    )


def _list(value: Any, what: str, source: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _malformed(source, f"'{what}' is not a list")
    return [item for item in value if isinstance(item, dict)]


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _malformed(source: str, detail: str) -> ProviderError:
    return ProviderError(
        f"{source} sent a malformed stream chunk: {detail}.",
        error_type="malformed_response",
        transient=False,
    )
