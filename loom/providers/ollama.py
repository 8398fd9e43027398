"""Ollama's chat API (SPEC 5): `ollama/<model>` or a bare model name, OLLAMA_BASE_URL.

The stream is NDJSON: `{"message": {"content": ...}, "done": false}` lines, then one
`{"done": true, "prompt_eval_count": N, "eval_count": M}`; `{"error": ...}` is a failure.
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


class OllamaProvider(HttpProvider):
    """A local (or remote) Ollama server; needs no key."""

    name = "Ollama"
    prefix = "ollama"
    model_form = "ollama/<model> or a bare model name"
    base_url_variable = "OLLAMA_BASE_URL"
    default_base_url = "http://localhost:11434"
    path = "/api/chat"

    def _base_url(self, configured: str) -> str:
        # Ollama's own OLLAMA_HOST is often written without a scheme ("localhost:11434").
        if configured and "://" not in configured:
            configured = "http://" + configured
        return super()._base_url(configured)

    def _headers(self) -> dict[str, str]:
        return {"Accept": "application/x-ndjson"}

    def _body(self, request: Request) -> dict[str, Any]:
        messages = [{"role": "system", "content": request.system}] if request.system else []
        messages += [{"role": turn.role, "content": turn.content} for turn in request.turns]
        return {
            "model": request.model,
            "messages": messages,
            "stream": True,
            "options": {"num_predict": request.max_tokens},
        }

    def _read(self, lines: Iterator[str], on_text: TextSink) -> Completion:
        parts: list[str] = []
        for line in lines:
            if not line.strip():
                continue
            payload = decode_object(line, self.name)
            if "error" in payload:
                raise ProviderError(
                    f"Ollama reported an error mid-stream: {message_of(payload)}",
                    error_type="server_error",
                    transient=True,
                )
            message = payload.get("message")
            text = message.get("content") if isinstance(message, dict) else None
            if isinstance(text, str) and text:
                parts.append(text)
                on_text(text)
            if payload.get("done") is True:
                usage = Usage(
                    input_tokens=token_count(payload.get("prompt_eval_count")),
                    output_tokens=token_count(payload.get("eval_count")),
                )
                return Completion(text="".join(parts), usage=usage)
        raise stream_interrupted(self.name)

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
        return super()._status_error(request, status, message)

    def _connection_hint(self) -> str:
        return (
            "Is Ollama running? Start it with `ollama serve`, "
            "or set OLLAMA_BASE_URL to where it listens."
        )


create = OllamaProvider.create
