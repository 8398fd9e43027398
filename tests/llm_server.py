"""A fake LLM server for tests: the OpenAI, Anthropic and Ollama wire formats on 127.0.0.1.

    with LLMServer() as server:
        server.script(Status(429, retry_after=0), Reply("ok"))
        env = server.env()          # *_BASE_URL variables pointing here
        ...
        assert server.requests[-1].body["model"] == "gpt-4o-mini"

Endpoints: POST /v1/chat/completions and /api/v1/chat/completions (OpenAI and OpenRouter),
POST /v1/messages (Anthropic), POST /api/chat (Ollama); GET /v1/models, /api/v1/models
and /api/tags list `server.models`; each wire format lives in its own
module (llm_wire_*.py). Each request takes the next scripted behaviour; an unscripted
request gets `Reply()`, whose text is "echo: " + the last user message, or, right after
tool results, "echo: tool said " + their contents. `CallTool` answers with tool calls.
Replies stream when the request asks for it (Ollama streams unless told
`"stream": false`) and are one JSON body otherwise; `LLMServer(stream=False)` answers
every request with one JSON body, whatever it asked (as some servers do).

Connections stay open between answers (HTTP/1.1 keep-alive: every whole answer has a
Content-Length or a finished chunked body), except after the faults that hang up;
`LLMServer(keep_alive=False)` closes after every response, as some servers do.
`server.connections` counts the connections accepted so far.

Standalone: `python tests/llm_server.py --port 0` prints "listening on <url>" and serves
until interrupted. POST a JSON list such as `[{"kind": "status", "code": 429}]` or
`[{"kind": "call_tool", "name": "calc", "arguments": {"expression": "1 + 1"}}]` to
/_script to queue behaviours; GET /_requests returns what was recorded.
"""

from __future__ import annotations

import argparse
import itertools
import json
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from llm_wire import Call, Exchange, Wire, chunks_of
from llm_wire_anthropic import AnthropicWire
from llm_wire_ollama import OllamaWire
from llm_wire_openai import OpenAIWire

__all__ = ["Call", "Exchange", "Wire", "chunks_of"]  # re-exported for the tests

# A model of each wire format, and the variable its API key goes in (None: no key).
WIRE_MODELS = {
    "openai": ("openai/gpt-test", "OPENAI_API_KEY"),
    "anthropic": ("anthropic/claude-test", "ANTHROPIC_API_KEY"),
    "ollama": ("ollama/qwen3:8b", None),
}


# ---------------------------------------------------------------- behaviours


@dataclass(frozen=True)
class Reply:
    """Answer normally. `text=None` echoes; chunks are words unless `chunk_size` is set;
    token counts default to the words in the request and the number of chunks."""

    text: str | None = None
    chunk_size: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    pause: float = 0.0  # seconds between streamed chunks, for a slow but steady model
    cached_tokens: int = 0  # how many of the input tokens were read from a prompt cache
    linger: float = 0.0  # seconds the stream stays open after its final event


@dataclass(frozen=True)
class Think:
    """Reason first (in the wire's reasoning field or thinking block), then answer `text`;
    with `text=""` the model gives only reasoning, as small reasoning models sometimes do."""

    reasoning: str
    text: str = ""


@dataclass(frozen=True)
class Status:
    """Answer `code` with a JSON error body in the wire's shape, and Retry-After if given
    (seconds, or an HTTP-date string), after `pause` seconds."""

    code: int
    message: str | None = None
    retry_after: float | str | None = None
    pause: float = 0.0


@dataclass(frozen=True)
class ModelNotFound:
    """404 for the requested model, worded as each API words it."""


@dataclass(frozen=True)
class EchoAuth:
    """An error whose body repeats the request's credential header, as careless servers do.
    With `key_at`, filler comes first so the key itself starts at that character of the
    error message (to put it across a client's cut)."""

    code: int = 401
    key_at: int | None = None


@dataclass(frozen=True)
class Hang:
    """Send nothing until `seconds` pass (None: until the server stops), then hang up."""

    seconds: float | None = None


@dataclass(frozen=True)
class KeepAlive:
    """Open the stream, then send only the wire's keep-alive frames (SSE comments, Anthropic
    `ping` events, empty NDJSON lines) every `interval` seconds, never a part of the answer,
    until `seconds` pass (None: until the client or the server gives up)."""

    interval: float = 0.2
    seconds: float | None = None


@dataclass(frozen=True)
class Endless:
    """A 200 with a JSON body (or with `status`, an error body) that never ends: it starts
    like one, then sends whitespace until the client hangs up or the server stops."""

    status: int = 200


@dataclass(frozen=True)
class Slow:
    """Answer like `Reply(text)`, but only after `seconds` (a slow model, not a broken one)."""

    seconds: float
    text: str | None = None


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


@dataclass(frozen=True)
class CallTool:
    """Answer with a call of tool `name`, after `text` (none by default). `arguments` is an
    object, or text sent verbatim as the model's JSON (so a test can send broken JSON);
    `also` adds more `(name, arguments)` calls to the same answer."""

    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    text: str = ""
    also: tuple[tuple[str, dict[str, Any] | str], ...] = ()


@dataclass(frozen=True)
class Structured:
    """Answer `text` as structured output, in the wire's own form: a call of the tool an
    Anthropic request forces (`tool_choice`), its input `text` verbatim (so a test can
    send broken JSON), else a plain reply of `text` (OpenAI, Ollama)."""

    text: str


@dataclass(frozen=True)
class Corrected:
    """Structured output that is wrong first and right after: `wrong` while the request
    has no correction turn yet (its last user turn does not mention the schema),
    `right` once the client has said what was wrong. Script one for each request."""

    wrong: str
    right: str


Behaviour = (
    Reply
    | Structured
    | Corrected
    | Slow
    | Status
    | ModelNotFound
    | EchoAuth
    | Think
    | Hang
    | KeepAlive
    | Endless
    | Drop
    | Malformed
    | StreamError
    | CallTool
)

BEHAVIOURS: dict[str, type[Behaviour]] = {
    "reply": Reply,
    "status": Status,
    "model_not_found": ModelNotFound,
    "echo_auth": EchoAuth,
    "think": Think,
    "hang": Hang,
    "keep_alive": KeepAlive,
    "endless": Endless,
    "slow": Slow,
    "drop": Drop,
    "malformed": Malformed,
    "stream_error": StreamError,
    "call_tool": CallTool,
    "structured": Structured,
    "corrected": Corrected,
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
    at: float = 0.0  # time.time() when the request arrived


# ---------------------------------------------------------------- endpoints


ROUTES: dict[str, Wire] = {
    "/chat/completions": OpenAIWire(),
    "/v1/messages": AnthropicWire(),
    "/api/chat": OllamaWire(),
}


def wire_for(path: str) -> Wire | None:
    """The wire format an endpoint path speaks, by its ending."""
    return next((w for end, w in ROUTES.items() if path.endswith(end)), None)


# ---------------------------------------------------------------- the server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY, as real servers set it: on a kept-alive connection Nagle's algorithm
    # would hold each small frame back until the client's delayed ACK (40 ms on Linux).
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read recorded requests, not access logs."""

    def do_GET(self) -> None:
        fake = self.server.fake
        if self.path == "/_requests":
            self.send_json(200, [asdict(r) for r in fake.requests])
            return
        if self.path == "/_connections":
            self.send_json(200, {"accepted": fake.connections})
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        path = self.path.split("?", 1)[0]  # routed by path; the query is recorded
        if path.endswith(("/v1/models", "/api/tags")):
            fake.record(Recorded("GET", self.path, headers, None, time.time()))
        if fake.models_status is not None and path.endswith(("/v1/models", "/api/tags")):
            message = f"refused, given {headers.get('authorization') or headers.get('x-api-key')}"
            self.send_json(fake.models_status, {"error": {"message": message}})
        elif path.endswith("/api/tags"):
            self.send_json(200, {"models": [{"name": m, "model": m} for m in fake.models]})
        elif path.endswith("/v1/models"):
            # OpenAI, OpenRouter and Anthropic (told apart by its x-api-key) all list
            # `data[].id`; Anthropic adds `type` and `display_name`.
            anthropic = "x-api-key" in headers
            data = [
                {"id": m, "type": "model", "display_name": m} if anthropic else {"id": m}
                for m in fake.models
            ]
            self.send_json(200, {"data": data, "object": "list"})
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
        fake.record(Recorded("POST", self.path, headers, body, time.time()))
        wire = wire_for(self.path.split("?", 1)[0])  # routed by path; the query is recorded
        if wire is None:
            self.send_json(404, {"error": f"no endpoint {self.path}"})
            return
        behaviour = fake.next_behaviour()
        asked = body.get("stream") if isinstance(body, dict) else None
        stream = wire.streams_by_default if asked is None else bool(asked)
        if fake.stream is not None:
            stream = fake.stream
        fake.opened()
        try:
            _Answer(self, wire, Exchange.of(body), stream, fake).run(behaviour)
        finally:
            fake.closed()

    def send_json(self, code: int, payload: Any, extra: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if not self.server.fake.keep_alive:
            self.send_header("Connection", "close")
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = not self.server.fake.keep_alive


@dataclass
class _Answer:
    """Carries out one behaviour for one request. Drop, Malformed and StreamError always
    stream, whatever the request asked."""

    handler: _Handler
    wire: Wire
    x: Exchange
    stream: bool
    fake: LLMServer
    started: bool = False

    def run(self, behaviour: Behaviour) -> None:
        match behaviour:
            case Reply(text, chunk_size, input_tokens, output_tokens, pause, cached, linger):
                chunks = chunks_of(self.text(text), chunk_size)
                tokens = (
                    self.x.words_in if input_tokens is None else input_tokens,
                    len(chunks) if output_tokens is None else output_tokens,
                )
                if self.stream:
                    self.open(tokens, cached)
                    self.deltas(chunks, pause)
                    self.close(tokens, cached=cached, linger=linger)
                else:
                    body = self.wire.complete(self.x, "".join(chunks), tokens, cached=cached)
                    self.handler.send_json(200, body)
            case Think(reasoning, text):
                chunks = chunks_of(text, None)
                tokens = self.default_tokens(chunks)
                if self.stream:
                    self.open(tokens)
                    for frame in self.wire.reasoning(self.x, reasoning):
                        self.send(frame)
                    self.deltas(chunks)
                    self.close(tokens)
                else:
                    body = self.wire.complete(self.x, text, tokens, reasoning=reasoning)
                    self.handler.send_json(200, body)
            case Status(code, message, retry_after, pause):
                if pause:
                    self.fake.stopping.wait(pause)
                body = self.wire.error_body(code, message or HTTPStatus(code).phrase)
                extra = {} if retry_after is None else {"Retry-After": _header(retry_after)}
                self.handler.send_json(code, body, extra)
            case ModelNotFound():
                message = self.wire.model_not_found(self.x.model)
                self.handler.send_json(404, self.wire.error_body(404, message))
            case EchoAuth(code, key_at):
                headers = self.handler.headers
                credential = headers.get("Authorization") or headers.get("x-api-key") or ""
                message = f"Incorrect API key provided: {credential}"
                if key_at is not None:
                    key = credential.removeprefix("Bearer ")
                    message = "x" * max(0, key_at - message.index(key)) + message
                self.handler.send_json(code, self.wire.error_body(code, message))
            case Slow(seconds, text):
                if not self.fake.stopping.wait(seconds):
                    self.run(Reply(text))
            case Hang(seconds):
                self.fake.stopping.wait(seconds)
                self.handler.close_connection = True
            case KeepAlive(interval, seconds):
                self.open(self.default_tokens([]))
                deadline = None if seconds is None else time.monotonic() + seconds
                while not self.fake.stopping.wait(interval):
                    if deadline is not None and time.monotonic() > deadline:
                        break
                    self.send(self.wire.keep_alive())
                self.handler.close_connection = True
            case Endless(status):
                self.handler.send_response(status)
                self.handler.send_header("Content-Type", "application/json")
                self.handler.end_headers()
                self.handler.wfile.write(b'{"error": {"message": "')
                block = b" " * (1 << 16)
                while not self.fake.stopping.is_set():
                    self.handler.wfile.write(block)
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
            case Structured(text):
                if self.x.forced_tool is not None:
                    self.run(CallTool(self.x.forced_tool, text))
                else:
                    self.run(Reply(text))
            case Corrected(wrong, right):
                told = "schema" in self.x.last_user.lower()
                self.run(Structured(right if told else wrong))
            case CallTool(name, arguments, text, also):
                calls = [self.call(n, a) for n, a in [(name, arguments), *also]]
                chunks = chunks_of(text, None)
                tokens = (self.x.words_in, len(chunks) + len(calls))
                if self.stream:
                    self.open(tokens)
                    self.deltas(chunks)
                    for frame in self.wire.calls(self.x, calls):
                        self.send(frame)
                    self.close(tokens, tools=True)
                else:
                    self.handler.send_json(200, self.wire.complete(self.x, text, tokens, calls))

    def call(self, name: str, arguments: dict[str, Any] | str) -> Call:
        text = arguments if isinstance(arguments, str) else json.dumps(arguments)
        prefix = self.wire.call_id_prefix
        return Call(f"{prefix}{self.fake.next_call_number():03d}" if prefix else "", name, text)

    def text(self, given: str | None) -> str:
        return given if given is not None else self.x.echo()

    def default_tokens(self, chunks: list[str]) -> tuple[int, int]:
        return self.x.words_in, len(chunks)

    def open(self, tokens: tuple[int, int], cached: int = 0) -> None:
        for frame in self.wire.opening(self.x, tokens[0], cached):
            self.send(frame)

    def deltas(self, chunks: list[str], pause: float = 0.0) -> None:
        for number, chunk in enumerate(chunks):
            if pause and number:
                self.fake.stopping.wait(pause)
            self.send(self.wire.delta(self.x, chunk))

    def close(
        self, tokens: tuple[int, int], tools: bool = False, cached: int = 0, linger: float = 0.0
    ) -> None:
        for frame in self.wire.closing(self.x, *tokens, tools=tools, cached=cached):
            self.send(frame)
        if linger:
            self.fake.stopping.wait(linger)
        self.end()

    def send(self, frame: bytes) -> None:
        """Write one frame as one HTTP chunk, sending the response head first."""
        if not self.started:
            self.started = True
            self.handler.send_response(200)
            self.handler.send_header("Content-Type", self.wire.content_type)
            self.handler.send_header("Transfer-Encoding", "chunked")
            if not self.fake.keep_alive:
                self.handler.send_header("Connection", "close")
            self.handler.end_headers()
        self.handler.wfile.write(b"%x\r\n%s\r\n" % (len(frame), frame))
        self.handler.wfile.flush()

    def end(self) -> None:
        """Finish the chunked body properly; the connection stays open for the next
        request unless the server closes after every response."""
        if self.started:
            self.handler.wfile.write(b"0\r\n\r\n")
            self.handler.wfile.flush()
        self.handler.close_connection = not self.fake.keep_alive


def _header(retry_after: float | str) -> str:
    return retry_after if isinstance(retry_after, str) else f"{retry_after:g}"


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], fake: LLMServer) -> None:
        super().__init__(address, _Handler)
        self.fake = fake

    def process_request(self, request: Any, client_address: Any) -> None:
        self.fake.accepted(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self.fake.released(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout tests) is normal; anything else is a server bug.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class LLMServer:
    """The fake server; a context manager that serves from a daemon thread while open."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        stream: bool | None = None,
        keep_alive: bool = True,
    ) -> None:
        """`stream`: None answers as each request asks; True or False overrides that.
        `keep_alive=False` closes the connection after every response."""
        self.stream = stream
        # What GET /v1/models and /api/tags list, and the error status they answer
        # instead when set.
        self.models: list[str] = ["model-a", "model-b"]
        self.models_status: int | None = None
        self.keep_alive = keep_alive
        self.connections = 0  # connections accepted so far
        self._sockets: set[socket.socket] = set()  # those still open
        self.stopping = threading.Event()
        self._call_numbers = itertools.count(1)
        self._lock = threading.Lock()
        self._queue: deque[Behaviour] = deque()
        # What an unscripted request gets.
        self.default: Behaviour = Reply()
        self._requests: list[Recorded] = []
        # Model requests being answered now, and the most there ever were at once.
        self.open_now = 0
        self.max_open = 0
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

    def next_call_number(self) -> int:
        with self._lock:
            return next(self._call_numbers)

    def next_behaviour(self) -> Behaviour:
        with self._lock:
            return self._queue.popleft() if self._queue else self.default

    def record(self, request: Recorded) -> None:
        with self._lock:
            self._requests.append(request)

    def accepted(self, connection: socket.socket) -> None:
        with self._lock:
            self.connections += 1
            self._sockets.add(connection)

    def released(self, connection: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(connection)

    def opened(self) -> None:
        with self._lock:
            self.open_now += 1
            self.max_open = max(self.max_open, self.open_now)

    def closed(self) -> None:
        with self._lock:
            self.open_now -= 1

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
        # A connection kept alive would otherwise go on serving a client after the stop.
        with self._lock:
            open_now = list(self._sockets)
        for connection in open_now:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

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
    parser.add_argument(
        "--delay", type=float, default=0.0, help="seconds each unscripted answer waits"
    )
    args = parser.parse_args()
    server = LLMServer(args.host, args.port)
    if args.delay > 0:
        server.default = Slow(args.delay)
    print(f"listening on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
