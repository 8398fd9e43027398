"""The fake server's OpenAI chat-completions wire (also OpenRouter's)."""

from __future__ import annotations

from typing import Any

from llm_wire import Call, Exchange, Wire, chunks_of, pieces, sse


class OpenAIWire(Wire):
    def _chunk(self, x: Exchange, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "model": x.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    def opening(self, x: Exchange, input_tokens: int, cached: int = 0) -> list[bytes]:
        # OpenRouter sends keep-alive comments like this one before the first chunk.
        return [b": PROCESSING\n\n", sse(self._chunk(x, {"role": "assistant"}, None))]

    def delta(self, x: Exchange, text: str) -> bytes:
        return sse(self._chunk(x, {"content": text}, None))

    def reasoning(self, x: Exchange, text: str) -> list[bytes]:
        # As llama.cpp, vLLM and DeepSeek stream it, with `content: null` beside it.
        return [
            sse(self._chunk(x, {"content": None, "reasoning_content": piece}, None))
            for piece in chunks_of(text, None)
        ]

    def calls(self, x: Exchange, calls: list[Call]) -> list[bytes]:
        # As OpenAI streams them: id and name first, then the arguments in pieces.
        frames = []
        for index, call in enumerate(calls):
            head = {
                "index": index,
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            frames.append(sse(self._chunk(x, {"tool_calls": [head]}, None)))
            for piece in pieces(call.arguments):
                fragment = {"index": index, "function": {"arguments": piece}}
                frames.append(sse(self._chunk(x, {"tool_calls": [fragment]}, None)))
        return frames

    def closing(
        self,
        x: Exchange,
        input_tokens: int,
        output_tokens: int,
        tools: bool = False,
        cached: int = 0,
    ) -> list[bytes]:
        frames = [sse(self._chunk(x, {}, "tool_calls" if tools else "stop"))]
        if x.include_usage:
            usage = _usage(input_tokens, output_tokens, cached)
            frames.append(sse({"id": "chatcmpl-fake", "choices": [], "usage": usage}))
        return [*frames, sse("[DONE]")]

    def keep_alive(self) -> bytes:
        return b": ping\n\n"

    def malformed(self) -> bytes:
        return b'data: {"choices": [{"delta": {"content": "unterminated\n\n'

    def stream_error(self, kind: str, message: str) -> bytes:
        return sse({"error": {"code": 502, "message": f"{kind}: {message}"}})

    def complete(
        self,
        x: Exchange,
        text: str,
        usage: tuple[int, int],
        calls: list[Call] | None = None,
        reasoning: str = "",
        cached: int = 0,
    ) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if reasoning:
            message["reasoning_content"] = reasoning
        if calls:
            message["content"] = text or None
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in calls
            ]
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "model": x.model,
            "choices": [
                {"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}
            ],
            "usage": _usage(*usage, cached),
        }

    def error_body(self, code: int, message: str) -> dict[str, Any]:
        kind = "rate_limit_exceeded" if code == 429 else "invalid_request_error"
        return {"error": {"message": message, "type": kind, "param": None, "code": None}}

    def model_not_found(self, model: str) -> str:
        return f"The model `{model}` does not exist or you do not have access to it."


def _usage(input_tokens: int, output_tokens: int, cached: int = 0) -> dict[str, Any]:
    # prompt_tokens includes the cached part; the details say how much of it was cached.
    return {
        "prompt_tokens": input_tokens,
        "completion_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
        "prompt_tokens_details": {"cached_tokens": cached},
    }
