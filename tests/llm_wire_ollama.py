"""The fake server's Ollama /api/chat wire: NDJSON lines, streamed unless told not to."""

from __future__ import annotations

import json
from typing import Any

from llm_wire import Call, Exchange, Wire, chunks_of

_STAMP = "2024-01-01T00:00:00Z"


class OllamaWire(Wire):
    content_type = "application/x-ndjson"
    streams_by_default = True
    call_id_prefix = None  # Ollama's tool calls carry no id

    def _line(self, payload: dict[str, Any]) -> bytes:
        return (json.dumps(payload) + "\n").encode()

    def _message(
        self, x: Exchange, text: str, done: bool, calls: list[Call] | None = None
    ) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if calls:
            # Ollama sends the arguments as an object, not as JSON text.
            message["tool_calls"] = [
                {"function": {"name": c.name, "arguments": c.arguments_value()}} for c in calls
            ]
        return {"model": x.model, "created_at": _STAMP, "message": message, "done": done}

    def delta(self, x: Exchange, text: str) -> bytes:
        return self._line(self._message(x, text, False))

    def reasoning(self, x: Exchange, text: str) -> list[bytes]:
        lines = []
        for piece in chunks_of(text, None):
            payload = self._message(x, "", False)
            payload["message"]["thinking"] = piece
            lines.append(self._line(payload))
        return lines

    def calls(self, x: Exchange, calls: list[Call]) -> list[bytes]:
        return [self._line(self._message(x, "", False, calls))]

    def closing(
        self,
        x: Exchange,
        input_tokens: int,
        output_tokens: int,
        tools: bool = False,
        cached: int = 0,
    ) -> list[bytes]:
        return [self._line(self._final(x, "", (input_tokens, output_tokens)))]

    def _final(
        self, x: Exchange, text: str, usage: tuple[int, int], calls: list[Call] | None = None
    ) -> dict[str, Any]:
        counts = {"prompt_eval_count": usage[0], "eval_count": usage[1]}
        return {**self._message(x, text, True, calls), "done_reason": "stop", **counts}

    def keep_alive(self) -> bytes:
        return b"\n"

    def malformed(self) -> bytes:
        return b'{"message": {"content": "unterminated\n'

    def stream_error(self, kind: str, message: str) -> bytes:
        return self._line({"error": f"{kind}: {message}"})

    def complete(
        self,
        x: Exchange,
        text: str,
        usage: tuple[int, int],
        calls: list[Call] | None = None,
        reasoning: str = "",
        cached: int = 0,
    ) -> dict[str, Any]:
        final = self._final(x, text, usage, calls)
        if reasoning:
            final["message"]["thinking"] = reasoning
        return final

    def error_body(self, code: int, message: str) -> dict[str, Any]:
        return {"error": message}

    def model_not_found(self, model: str) -> str:
        return f"model '{model}' not found, try pulling it first"
