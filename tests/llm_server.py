"""A fake LLM server for tests: the OpenAI, Anthropic and Ollama wire formats on 127.0.0.1.

    with LLMServer() as server:
        server.script(Status(429, retry_after=0), Reply("ok"))
        env = server.env()          # *_BASE_URL variables pointing here
        ...
        assert server.requests[-1].body["model"] == "gpt-4o-mini"

Endpoints: POST /v1/chat/completions and /api/v1/chat/completions (OpenAI and OpenRouter),
POST /v1/messages (Anthropic), POST /api/chat (Ollama). Each request takes the next
scripted behaviour; an unscripted request gets `Reply()`, whose text is "echo: " + the
last user message. Replies stream when the request asks for it (Ollama streams unless
told `"stream": false`) and are one JSON body otherwise.

Standalone: `python tests/llm_server.py --port 0` prints "listening on <url>" and serves
until interrupted. POST a JSON list such as `[{"kind": "status", "code": 429}]` to /_script
to queue behaviours; GET /_requests returns what was recorded.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import asdict, dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

# ---------------------------------------------------------------- behaviours


@dataclass(frozen=True)
class Reply:
    """Answer normally. `text=None` echoes; chunks are words unless `chunk_size` is set;
    token counts default to the words in the request and the number of chunks."""

    text: str | None = None
    chunk_size: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None


@dataclass(frozen=True)
class Status:
    """Answer `code` with a JSON error body in the wire's shape, and Retry-After if given
    (seconds, or an HTTP-date string)."""

    code: int
    message: str | None = None
    retry_after: float | str | None = None


@dataclass(frozen=True)
class ModelNotFound:
    """404 for the requested model, worded as each API words it."""


@dataclass(frozen=True)
class EchoAuth:
    """An error whose body repeats the request's credential header, as careless servers do."""

    code: int = 401


@dataclass(frozen=True)
class Hang:
    """Send nothing until `seconds` pass (None: until the server stops), then hang up."""

    seconds: float | None = None


@dataclass(frozen=True)
class Drop:
    """Stream `after` text chunks, then close the connection in the middle of the body.
    With `graceful`, end the body cleanly instead, but without the final event."""

    after: int = 1
    graceful: bool = False
    text: str | None = None


@dataclass(frozen=True)
class Malformed:
    """Stream `after` text chunks, then an event whose data is not JSON, then the rest."""

    after: int = 0
    text: str | None = None


@dataclass(frozen=True)
class StreamError:
    """Stream `after` text chunks, then the wire's in-stream error (Anthropic `event: error`,
    an OpenAI chunk with `error`, an Ollama `{"error": ...}` line); `kind` is Anthropic's
    error type, e.g. "overloaded_error"."""

    kind: str = "overloaded_error"
    message: str = "Overloaded"
    after: int = 1


Behaviour = Reply | Status | ModelNotFound | EchoAuth | Hang | Drop | Malformed | StreamError

BEHAVIOURS: dict[str, type[Behaviour]] = {
    "reply": Reply,
    "status": Status,
    "model_not_found": ModelNotFound,
    "echo_auth": EchoAuth,
    "hang": Hang,
    "drop": Drop,
    "malformed": Malformed,
    "stream_error": StreamError,
}


def behaviour_from_json(value: dict[str, Any]) -> Behaviour:
    """`{"kind": "status", "code": 429}` -> Status(429); the kinds are BEHAVIOURS' keys."""
    fields = dict(value)
    return BEHAVIOURS[fields.pop("kind")](**fields)


@dataclass(frozen=True)
class Recorded:
    """One request as the server saw it; header names are lower-case."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


# ---------------------------------------------------------------- wire formats


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict))
    return ""


@dataclass(frozen=True)
class Exchange:
    """What a wire needs from the request to shape its answer."""

    model: str
    last_user: str
    words_in: int
    include_usage: bool

    @classmethod
    def of(cls, body: Any) -> Exchange:
        body = body if isinstance(body, dict) else {}
        messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
        users = [_text_of(m.get("content")) for m in messages if m.get("role") == "user"]
        texts = [_text_of(m.get("content")) for m in messages] + [_text_of(body.get("system"))]
        options = body.get("stream_options") or {}
        return cls(
            model=str(body.get("model", "")),
            last_user=users[-1] if users else "",
            words_in=sum(len(t.split()) for t in texts),
            include_usage=bool(options.get("include_usage")),
        )


class Wire(ABC):
    """How one API frames streams, complete answers and errors. Frames are bytes."""

    content_type = "text/event-stream"
    streams_by_default = False

    def opening(self, x: Exchange, input_tokens: int) -> list[bytes]:
        """Frames sent before the first text chunk."""
        return []

    @abstractmethod
    def delta(self, x: Exchange, text: str) -> bytes:
        """The frame carrying one text chunk."""

    @abstractmethod
    def closing(self, x: Exchange, input_tokens: int, output_tokens: int) -> list[bytes]:
        """Frames after the last chunk, ending with the stream's terminal event."""

    @abstractmethod
    def malformed(self) -> bytes:
        """A frame whose JSON is broken."""

    @abstractmethod
    def stream_error(self, kind: str, message: str) -> bytes:
        """The frame this API uses to report an error after a 200."""

    @abstractmethod
    def complete(self, x: Exchange, text: str, usage: tuple[int, int]) -> dict[str, Any]:
        """The whole answer as one JSON body, for `"stream": false`."""

    @abstractmethod
    def error_body(self, code: int, message: str) -> dict[str, Any]:
        """The JSON body of an error status."""

    @abstractmethod
    def model_not_found(self, model: str) -> str:
        """The message this API gives for an unknown model."""


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    payload = data if isinstance(data, str) else json.dumps(data)
    return f"{head}data: {payload}\n\n".encode()


class OpenAIWire(Wire):
    def _chunk(self, x: Exchange, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "model": x.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    def opening(self, x: Exchange, input_tokens: int) -> list[bytes]:
        # OpenRouter sends keep-alive comments like this one before the first chunk.
        return [b": PROCESSING\n\n", _sse(self._chunk(x, {"role": "assistant"}, None))]

    def delta(self, x: Exchange, text: str) -> bytes:
        return _sse(self._chunk(x, {"content": text}, None))

    def closing(self, x: Exchange, input_tokens: int, output_tokens: int) -> list[bytes]:
        frames = [_sse(self._chunk(x, {}, "stop"))]
        if x.include_usage:
            usage = _openai_usage(input_tokens, output_tokens)
            frames.append(_sse({"id": "chatcmpl-fake", "choices": [], "usage": usage}))
        return [*frames, _sse("[DONE]")]

    def malformed(self) -> bytes:
        return b'data: {"choices": [{"delta": {"content": "unterminated\n\n'

    def stream_error(self, kind: str, message: str) -> bytes:
        return _sse({"error": {"code": 502, "message": f"{kind}: {message}"}})

    def complete(self, x: Exchange, text: str, usage: tuple[int, int]) -> dict[str, Any]:
        message = {"role": "assistant", "content": text}
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "model": x.model,
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": _openai_usage(*usage),
        }

    def error_body(self, code: int, message: str) -> dict[str, Any]:
        kind = "rate_limit_exceeded" if code == 429 else "invalid_request_error"
        return {"error": {"message": message, "type": kind, "param": None, "code": None}}

    def model_not_found(self, model: str) -> str:
        return f"The model `{model}` does not exist or you do not have access to it."


def _openai_usage(input_tokens: int, output_tokens: int) -> dict[str, int]:
    total = input_tokens + output_tokens
    return {
        "prompt_tokens": input_tokens,
        "completion_tokens": output_tokens,
        "total_tokens": total,
    }


_ANTHROPIC_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    529: "overloaded_error",
}


class AnthropicWire(Wire):
    def opening(self, x: Exchange, input_tokens: int) -> list[bytes]:
        message: dict[str, Any] = {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": x.model,
            "content": [],
            "stop_reason": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": 1},
        }
        block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text"}}
        return [
            _sse({"type": "message_start", "message": message}, "message_start"),
            _sse(block, "content_block_start"),
            _sse({"type": "ping"}, "ping"),
        ]

    def delta(self, x: Exchange, text: str) -> bytes:
        delta = {"type": "text_delta", "text": text}
        payload = {"type": "content_block_delta", "index": 0, "delta": delta}
        return _sse(payload, "content_block_delta")

    def closing(self, x: Exchange, input_tokens: int, output_tokens: int) -> list[bytes]:
        message_delta = {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": output_tokens},
        }
        return [
            _sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
            _sse(message_delta, "message_delta"),
            _sse({"type": "message_stop"}, "message_stop"),
        ]

    def malformed(self) -> bytes:
        return b'event: content_block_delta\ndata: {"type": "content_block_delta", "delta": {\n\n'

    def stream_error(self, kind: str, message: str) -> bytes:
        return _sse({"type": "error", "error": {"type": kind, "message": message}}, "error")

    def complete(self, x: Exchange, text: str, usage: tuple[int, int]) -> dict[str, Any]:
        return {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": x.model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": usage[0], "output_tokens": usage[1]},
        }

    def error_body(self, code: int, message: str) -> dict[str, Any]:
        kind = _ANTHROPIC_ERRORS.get(code, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}

    def model_not_found(self, model: str) -> str:
        return f"model: {model}"


class OllamaWire(Wire):
    content_type = "application/x-ndjson"
    streams_by_default = True

    def _line(self, payload: dict[str, Any]) -> bytes:
        return (json.dumps(payload) + "\n").encode()

    def _message(self, x: Exchange, text: str, done: bool) -> dict[str, Any]:
        message = {"role": "assistant", "content": text}
        stamp = "2024-01-01T00:00:00Z"
        return {"model": x.model, "created_at": stamp, "message": message, "done": done}

    def delta(self, x: Exchange, text: str) -> bytes:
        return self._line(self._message(x, text, False))

    def closing(self, x: Exchange, input_tokens: int, output_tokens: int) -> list[bytes]:
        return [self._line(self._final(x, "", (input_tokens, output_tokens)))]

    def _final(self, x: Exchange, text: str, usage: tuple[int, int]) -> dict[str, Any]:
        counts = {"prompt_eval_count": usage[0], "eval_count": usage[1]}
        return {**self._message(x, text, True), "done_reason": "stop", **counts}

    def malformed(self) -> bytes:
        return b'{"message": {"content": "unterminated\n'

    def stream_error(self, kind: str, message: str) -> bytes:
        return self._line({"error": f"{kind}: {message}"})

    def complete(self, x: Exchange, text: str, usage: tuple[int, int]) -> dict[str, Any]:
        return self._final(x, text, usage)

    def error_body(self, code: int, message: str) -> dict[str, Any]:
        return {"error": message}

    def model_not_found(self, model: str) -> str:
        return f"model '{model}' not found, try pulling it first"


ROUTES: dict[str, Wire] = {
    "/chat/completions": OpenAIWire(),
    "/v1/messages": AnthropicWire(),
    "/api/chat": OllamaWire(),
}


def wire_for(path: str) -> Wire | None:
    """The wire format an endpoint path speaks, by its ending."""
    return next((w for end, w in ROUTES.items() if path.endswith(end)), None)


def chunks_of(text: str, size: int | None) -> list[str]:
    """Split `text` into stream chunks that concatenate back to it."""
    if size:
        return [text[i : i + size] for i in range(0, len(text), size)]
    return re.findall(r"\S+\s*|\s+", text)


# ---------------------------------------------------------------- the server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read recorded requests, not access logs."""

    def do_GET(self) -> None:
        if self.path == "/_requests":
            self.send_json(200, [asdict(r) for r in self.server.fake.requests])
        else:
            self.send_json(404, {"error": f"no endpoint {self.path}"})

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        if self.path == "/_script":
            self.server.fake.script(*(behaviour_from_json(b) for b in body or []))
            self.send_json(200, {"queued": len(body or [])})
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        fake = self.server.fake
        fake.record(Recorded("POST", self.path, headers, body))
        wire = wire_for(self.path)
        if wire is None:
            self.send_json(404, {"error": f"no endpoint {self.path}"})
            return
        behaviour = fake.next_behaviour()
        asked = body.get("stream") if isinstance(body, dict) else None
        stream = wire.streams_by_default if asked is None else bool(asked)
        _Answer(self, wire, Exchange.of(body), stream, fake.stopping).run(behaviour)

    def send_json(self, code: int, payload: Any, extra: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True


@dataclass
class _Answer:
    """Carries out one behaviour for one request. Drop, Malformed and StreamError always
    stream, whatever the request asked."""

    handler: _Handler
    wire: Wire
    x: Exchange
    stream: bool
    stopping: threading.Event
    started: bool = False

    def run(self, behaviour: Behaviour) -> None:
        match behaviour:
            case Reply(text, chunk_size, input_tokens, output_tokens):
                chunks = chunks_of(self.text(text), chunk_size)
                tokens = (
                    self.x.words_in if input_tokens is None else input_tokens,
                    len(chunks) if output_tokens is None else output_tokens,
                )
                if self.stream:
                    self.open(tokens)
                    self.deltas(chunks)
                    self.close(tokens)
                else:
                    self.handler.send_json(200, self.wire.complete(self.x, "".join(chunks), tokens))
            case Status(code, message, retry_after):
                body = self.wire.error_body(code, message or HTTPStatus(code).phrase)
                extra = {} if retry_after is None else {"Retry-After": _header(retry_after)}
                self.handler.send_json(code, body, extra)
            case ModelNotFound():
                message = self.wire.model_not_found(self.x.model)
                self.handler.send_json(404, self.wire.error_body(404, message))
            case EchoAuth(code):
                headers = self.handler.headers
                credential = headers.get("Authorization") or headers.get("x-api-key") or ""
                message = f"Incorrect API key provided: {credential}"
                self.handler.send_json(code, self.wire.error_body(code, message))
            case Hang(seconds):
                self.stopping.wait(seconds)
                self.handler.close_connection = True
            case Drop(after, graceful, text):
                chunks = chunks_of(self.text(text), None)
                self.open(self.default_tokens(chunks))
                self.deltas(chunks[:after])
                if graceful:
                    self.end()
                self.handler.close_connection = True
            case Malformed(after, text):
                chunks = chunks_of(self.text(text), None)
                self.open(self.default_tokens(chunks))
                self.deltas(chunks[:after])
                self.send(self.wire.malformed())
                self.deltas(chunks[after:])
                self.close(self.default_tokens(chunks))
            case StreamError(kind, message, after):
                chunks = chunks_of(self.text(None), None)
                self.open(self.default_tokens(chunks))
                self.deltas(chunks[:after])
                self.send(self.wire.stream_error(kind, message))
                self.end()

    def text(self, given: str | None) -> str:
        return given if given is not None else "echo: " + self.x.last_user

    def default_tokens(self, chunks: list[str]) -> tuple[int, int]:
        return self.x.words_in, len(chunks)

    def open(self, tokens: tuple[int, int]) -> None:
        for frame in self.wire.opening(self.x, tokens[0]):
            self.send(frame)

    def deltas(self, chunks: list[str]) -> None:
        for chunk in chunks:
            self.send(self.wire.delta(self.x, chunk))

    def close(self, tokens: tuple[int, int]) -> None:
        for frame in self.wire.closing(self.x, *tokens):
            self.send(frame)
        self.end()

    def send(self, frame: bytes) -> None:
        """Write one frame as one HTTP chunk, sending the response head first."""
        if not self.started:
            self.started = True
            self.handler.send_response(200)
            self.handler.send_header("Content-Type", self.wire.content_type)
            self.handler.send_header("Transfer-Encoding", "chunked")
            self.handler.send_header("Connection", "close")
            self.handler.end_headers()
        self.handler.wfile.write(b"%x\r\n%s\r\n" % (len(frame), frame))
        self.handler.wfile.flush()

    def end(self) -> None:
        """Finish the chunked body properly."""
        if self.started:
            self.handler.wfile.write(b"0\r\n\r\n")
        self.handler.close_connection = True


def _header(retry_after: float | str) -> str:
    return retry_after if isinstance(retry_after, str) else f"{retry_after:g}"


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], fake: LLMServer) -> None:
        super().__init__(address, _Handler)
        self.fake = fake

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout tests) is normal; anything else is a server bug.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class LLMServer:
    """The fake server; a context manager that serves from a daemon thread while open."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._queue: deque[Behaviour] = deque()
        self._requests: list[Recorded] = []
        self._httpd = _Server((host, port), self)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL, e.g. "http://127.0.0.1:43117"."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def env(self) -> dict[str, str]:
        """Base-URL settings that point every provider at this server."""
        return {
            "OPENAI_BASE_URL": f"{self.url}/v1",
            "OPENROUTER_BASE_URL": f"{self.url}/api/v1",
            "ANTHROPIC_BASE_URL": self.url,
            "OLLAMA_BASE_URL": self.url,
        }

    def script(self, *behaviours: Behaviour) -> None:
        """Queue behaviours for the next requests, one each, in order."""
        with self._lock:
            self._queue.extend(behaviours)

    def next_behaviour(self) -> Behaviour:
        with self._lock:
            return self._queue.popleft() if self._queue else Reply()

    def record(self, request: Recorded) -> None:
        with self._lock:
            self._requests.append(request)

    @property
    def requests(self) -> list[Recorded]:
        """Every model request so far, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def last(self) -> Recorded:
        """The most recent model request."""
        return self.requests[-1]

    def start(self) -> LLMServer:
        # A short poll interval keeps `stop` (and so each test's teardown) quick.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Release hanging requests, stop serving and close the socket."""
        self.stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
        self._httpd.server_close()

    def serve_forever(self) -> None:
        """Serve from the calling thread until interrupted (the standalone mode)."""
        try:
            self._httpd.serve_forever()
        finally:
            self.stopping.set()
            self._httpd.server_close()

    def __enter__(self) -> LLMServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve a fake LLM API for tests.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args()
    server = LLMServer(args.host, args.port)
    print(f"listening on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
