"""Ollama's chat API (SPEC 5): `ollama/<model>` or a bare model name, OLLAMA_BASE_URL.

The stream is NDJSON: `{"message": {"content": ...}, "done": false}` lines, then one
`{"done": true, "prompt_eval_count": N, "eval_count": M}`; `{"error": ...}` is a failure.

Tools go out in OpenAI's `function` shape. A call comes whole in one line's
`message.tool_calls`, with `function.arguments` as a JSON object and usually no id;
results go back as `role: tool` messages naming the tool.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from loom.errors import ProviderError
from loom.providers.base import Completion, Request, TextSink, ToolCall, Usage
from loom.providers.http import (
    HttpProvider,
    decode_object,
    message_of,
    stream_interrupted,
    token_count,
)
from loom.providers.response import ResponseReader
from loom.providers.tool_calls import (
    ChatDialect,
    arguments_object,
    arguments_text,
    chat_body,
    new_call_id,
)


class OllamaProvider(HttpProvider):
    """A local (or remote) Ollama server; needs no key."""

    name = "Ollama"
    prefix = "ollama"
    model_form = "ollama/<model> or a bare model name"
    base_url_variable = "OLLAMA_BASE_URL"
    default_base_url = "http://localhost:11434"
    path = "/api/chat"
    models_path = "/api/tags"

    def _base_url(self, configured: str) -> str:
        # Ollama's own OLLAMA_HOST is often written without a scheme ("localhost:11434").
        if configured and "://" not in configured:
            configured = "http://" + configured
        return super()._base_url(configured)

    def _headers(self) -> dict[str, str]:
        return {"Accept": "application/x-ndjson"}

    def _model_ids(self, payload: dict[str, Any]) -> list[str]:
        # GET /api/tags: {"models": [{"name": "qwen3:8b", ...}]}
        items = payload.get("models")
        items = items if isinstance(items, list) else []
        return [i["name"] for i in items if isinstance(i, dict) and isinstance(i.get("name"), str)]

    def _body(self, request: Request) -> dict[str, Any]:
        fields: dict[str, Any] = {"options": {"num_predict": request.max_tokens, **request.options}}
        if request.schema is not None:
            fields["format"] = dict(request.schema)
        return chat_body(request, _DIALECT, **fields)

    def _read(self, reply: ResponseReader, on_text: TextSink) -> Completion:
        answer = _Reply()
        for line in reply:
            if not line.strip():
                continue
            before = len(answer.calls) + len(answer.reasoning)
            if self._take(answer, decode_object(line, self.name, self._secrets), on_text):
                return answer.completion
            if len(answer.calls) + len(answer.reasoning) > before:
                reply.progressed = True
        raise stream_interrupted(self.name)

    def _whole(self, payload: dict[str, Any]) -> Completion:
        reply = _Reply()
        if not self._take(reply, payload, _ignore):
            raise ProviderError(
                f"{self.name} sent a reply without '\"done\": true'.",
                error_type="malformed_response",
                transient=False,
            )
        return reply.completion

    def _take(self, reply: _Reply, payload: dict[str, Any], on_text: TextSink) -> bool:
        """Add one line of the reply; True when it was the last."""
        if "error" in payload:
            raise ProviderError(
                f"Ollama reported an error mid-stream: {message_of(payload, self._secrets)}",
                error_type="server_error",
                transient=True,
            )
        message = payload.get("message")
        message = message if isinstance(message, dict) else {}
        text = message.get("content")
        if isinstance(text, str) and text:
            reply.parts.append(text)
            on_text(text)
        thinking = message.get("thinking")  # a thinking model's reasoning (Ollama 0.9+)
        if isinstance(thinking, str) and thinking:
            reply.reasoning.append(thinking)
        for call in message.get("tool_calls") or []:
            if isinstance(call, dict):
                reply.calls.append(_call(call))
        if payload.get("done") is True:
            reply.usage = Usage(
                input_tokens=token_count(payload.get("prompt_eval_count")),
                output_tokens=token_count(payload.get("eval_count")),
            )
            return True
        return False

    def _status_error(self, request: Request, status: int, message: str) -> ProviderError:
        # Ollama answers 404 {"error": "model 'x' not found, try pulling it first"}.
        if status == 404 and "not found" in message.lower() and "model" in message.lower():
            return ProviderError(
                f"Model '{request.model}' is not available in Ollama. "
                f"Run: ollama pull {request.model}",
                error_type="model_not_found",
                transient=False,
                status=status,
            )
        # And 400 {"error": "registry.ollama.ai/library/x:latest does not support tools"}.
        if status == 400 and "does not support tools" in message.lower():
            return ProviderError(
                f"Model '{request.model}' does not support tools in Ollama. Choose a model "
                "that does, or start the agent with --tools '' to offer it none.",
                error_type="tools_unsupported",
                transient=False,
                status=status,
            )
        return super()._status_error(request, status, message)

    def _connection_hint(self) -> str:
        return (
            "Is Ollama running? Start it with `ollama serve`, "
            "or set OLLAMA_BASE_URL to where it listens."
        )


@dataclass
class _Reply:
    parts: list[str] = field(default_factory=list)
    calls: list[ToolCall] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    reasoning: list[str] = field(default_factory=list)

    @property
    def completion(self) -> Completion:
        return Completion(
            text="".join(self.parts),
            usage=self.usage,
            tool_calls=tuple(self.calls),
            reasoning="".join(self.reasoning),
        )


def _call(call: dict[str, Any]) -> ToolCall:
    function = call.get("function")
    function = function if isinstance(function, dict) else {}
    call_id, name = call.get("id"), function.get("name")
    return ToolCall(
        id=call_id if isinstance(call_id, str) and call_id else new_call_id(),
        name=name if isinstance(name, str) else "",
        arguments=arguments_text(function.get("arguments")),
    )


# Ollama names the tool a result comes from (its calls carry no ids) and wants the
# arguments of earlier calls back as objects.
_DIALECT = ChatDialect(
    result=lambda result: {"role": "tool", "content": result.content, "tool_name": result.name},
    call=lambda call: {
        "function": {"name": call.name, "arguments": arguments_object(call.arguments)}
    },
)


def _ignore(text: str) -> None:
    return None


create = OllamaProvider.create
