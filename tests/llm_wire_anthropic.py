"""The fake server's Anthropic Messages wire."""

from __future__ import annotations

from typing import Any

from llm_wire import Call, Exchange, Wire, chunks_of, pieces, sse

_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    529: "overloaded_error",
}


class AnthropicWire(Wire):
    call_id_prefix = "toolu_"

    def opening(self, x: Exchange, input_tokens: int, cached: int = 0) -> list[bytes]:
        message: dict[str, Any] = {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": x.model,
            "content": [],
            "stop_reason": None,
            "usage": _usage(input_tokens, 1, cached),
        }
        block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text"}}
        return [
            sse({"type": "message_start", "message": message}, "message_start"),
            sse(block, "content_block_start"),
            sse({"type": "ping"}, "ping"),
        ]

    def delta(self, x: Exchange, text: str) -> bytes:
        delta = {"type": "text_delta", "text": text}
        payload = {"type": "content_block_delta", "index": 0, "delta": delta}
        return sse(payload, "content_block_delta")

    def reasoning(self, x: Exchange, text: str) -> list[bytes]:
        # A thinking block, ended by its signature; it takes an index after the text
        # block's (the client matches blocks by type, not by position).
        index = 8
        start = {"type": "thinking", "thinking": "", "signature": ""}
        frames = [sse({"type": "content_block_start", "index": index, "content_block": start})]
        for piece in chunks_of(text, None):
            delta = {"type": "thinking_delta", "thinking": piece}
            frames.append(sse({"type": "content_block_delta", "index": index, "delta": delta}))
        signature = {"type": "signature_delta", "signature": "c2lnbmF0dXJl"}
        frames.append(sse({"type": "content_block_delta", "index": index, "delta": signature}))
        frames.append(sse({"type": "content_block_stop", "index": index}))
        return frames

    def calls(self, x: Exchange, calls: list[Call]) -> list[bytes]:
        # The text block (index 0) ends; each call is a tool_use block after it, its input
        # streamed as pieces of JSON.
        frames = [sse({"type": "content_block_stop", "index": 0}, "content_block_stop")]
        for index, call in enumerate(calls, start=1):
            block = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
            start = {"type": "content_block_start", "index": index, "content_block": block}
            frames.append(sse(start, "content_block_start"))
            for piece in pieces(call.arguments):
                delta = {"type": "input_json_delta", "partial_json": piece}
                payload = {"type": "content_block_delta", "index": index, "delta": delta}
                frames.append(sse(payload, "content_block_delta"))
            frames.append(sse({"type": "content_block_stop", "index": index}, "content_block_stop"))
        return frames

    def closing(
        self,
        x: Exchange,
        input_tokens: int,
        output_tokens: int,
        tools: bool = False,
        cached: int = 0,
    ) -> list[bytes]:
        message_delta = {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use" if tools else "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": output_tokens},
        }
        text_stop = (
            [] if tools else [sse({"type": "content_block_stop", "index": 0}, "content_block_stop")]
        )
        return [
            *text_stop,
            sse(message_delta, "message_delta"),
            sse({"type": "message_stop"}, "message_stop"),
        ]

    def keep_alive(self) -> bytes:
        return sse({"type": "ping"}, "ping")

    def malformed(self) -> bytes:
        return b'event: content_block_delta\ndata: {"type": "content_block_delta", "delta": {\n\n'

    def stream_error(self, kind: str, message: str) -> bytes:
        return sse({"type": "error", "error": {"type": kind, "message": message}}, "error")

    def complete(
        self,
        x: Exchange,
        text: str,
        usage: tuple[int, int],
        calls: list[Call] | None = None,
        reasoning: str = "",
        cached: int = 0,
    ) -> dict[str, Any]:
        content: list[dict[str, Any]] = (
            [{"type": "thinking", "thinking": reasoning, "signature": "c2ln"}] if reasoning else []
        )
        content += [{"type": "text", "text": text}] if text or not calls else []
        content += [
            {"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments_value()}
            for c in calls or []
        ]
        return {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": x.model,
            "content": content,
            "stop_reason": "tool_use" if calls else "end_turn",
            "usage": _usage(usage[0], usage[1], cached),
        }

    def error_body(self, code: int, message: str) -> dict[str, Any]:
        kind = _ERRORS.get(code, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}

    def model_not_found(self, model: str) -> str:
        return f"model: {model}"


def _usage(input_tokens: int, output_tokens: int, cached: int) -> dict[str, int]:
    # The Messages API counts the prompt in parts: fresh, read from and written to the cache.
    return {
        "input_tokens": input_tokens - cached,
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": 0,
        "output_tokens": output_tokens,
    }
