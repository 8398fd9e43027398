"""HTTP/1.1 over plain sockets, as the model APIs need it: one request at a time per
connection, a body streamed as it arrives, connections kept alive for the next call.

A model call is a POST of one JSON body and a streamed reply (SSE or NDJSON, chunked or
not), so this is all a provider needs: TLS with the system's certificates, an
`http://` proxy from the environment (CONNECT for https), `Content-Length`, chunked and
read-to-close bodies, and gzip or deflate if a server compresses although asked not to.
It costs a fraction of a general client's CPU per call (docs/adr/0007-http-transport.md).

Each failure is one of the exceptions below; `loom.providers.http` words them for users.
"""

from __future__ import annotations

import base64
import ipaddress
import math
import os
import re
import select
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, unquote, urlsplit, urlunsplit

HEADER_LIMIT = 64 * 1024
MAX_HEADERS = 200
RECEIVE_SIZE = 64 * 1024
SEND_SIZE = 64 * 1024
DECODED_PIECE = 1024 * 1024
# Connections kept open between calls per server; more calls in flight open more.
KEEP_IDLE = 32
USER_AGENT = "loom"

# The most request heads a client keeps checked (one per agent model and URL, in use).
KEEP_HEADS = 64
# The longest wait poll takes: a C int of milliseconds (about 24 days).
_POLL_MAX_MS = 2**31 - 1

Scheme = Literal["http", "https"]
# What a header may hold: a token name, and a value without line breaks or other control
# characters (which would end the header early and let the rest pass as another).
_NAME_OK = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_FIELD_OK = re.compile(r"[^\x00-\x08\x0a-\x1f\x7f]*")


class BadHeader(ValueError):
    """A header that cannot be sent as given; nothing was sent."""


class TransportError(Exception):
    """A request that failed below HTTP: the text says how, without any header."""


class ConnectFailed(TransportError):
    """No connection: the name did not resolve, the server refused, TLS failed."""


class ConnectTimedOut(ConnectFailed):
    """Connecting took longer than the connect timeout."""


class ReadTimedOut(TransportError):
    """The server sent nothing (or took nothing) for the read timeout."""


class Broken(TransportError):
    """The connection closed or broke the protocol before the response was whole."""


class Undecodable(TransportError):
    """The body came in a content encoding that could not be decoded."""


@dataclass(frozen=True)
class Origin:
    """Where requests go: scheme, host and port, and the proxy in between (if any)."""

    scheme: Scheme
    host: str
    port: int
    proxy: Proxy | None = None

    @property
    def authority(self) -> str:
        """`host[:port]` as the Host header writes it (the port only when not default)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


@dataclass(frozen=True)
class Proxy:
    """An `http://` proxy: where it listens and its Proxy-Authorization, if any."""

    host: str
    port: int
    authorization: str | None = None


# The characters of a path or query sent as they are (RFC 3986 pchar, and "/" and "%").
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"


def with_path(base: str, path: str) -> str:
    """`base` with `path` added to the end of its path; its query (as Azure's
    `?api-version=`) stays after it, and a fragment is dropped."""
    parts = urlsplit(base)
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + path, parts.query, ""))


def split_url(url: str) -> tuple[Scheme, str, int, str]:
    """`(scheme, host, port, target)` of an http(s) URL; ValueError when it is not one."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http:// or https:// URL: {url!r}")
    port = parts.port or (443 if scheme == "https" else 80)
    # What may not go raw into a request line (a space, a control character, non-ASCII)
    # is percent-encoded; escapes already there are kept.
    # A byte of the environment that is not UTF-8 (a lone surrogate) is that byte again.
    target = quote(parts.path or "/", safe=_PATH_SAFE, errors="surrogateescape")
    if parts.query:
        target += "?" + quote(parts.query, safe=_PATH_SAFE + "?", errors="surrogateescape")
    return ("https" if scheme == "https" else "http"), parts.hostname, port, target


def proxy_for(scheme: Scheme, host: str, env: Mapping[str, str]) -> Proxy | None:
    """The proxy the environment names for `scheme` (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY,
    either case), unless NO_PROXY exempts `host`; ValueError for a proxy URL that is not
    `http://`."""
    name = f"{scheme}_proxy"
    value = _variable(env, name) or _variable(env, "all_proxy")
    if not value or _exempt(host, _variable(env, "no_proxy")):
        return None
    if "://" not in value:
        value = f"http://{value}"
    parts = urlsplit(value)
    # Never the value itself: it may hold the proxy's password.
    if not parts.scheme:
        raise ValueError("the value is not a proxy URL")
    if parts.scheme.lower() != "http":
        raise ValueError(f"only http:// proxies are supported, not {parts.scheme}://")
    if not parts.hostname:
        raise ValueError("the proxy URL names no host")
    try:
        port = parts.port or 80
    except ValueError:
        # urllib's own text quotes the "port", which may be the start of a password.
        raise ValueError(
            "the proxy URL's port is not a number up to 65535 (a password holding /, ? or #"
            " must be percent-encoded)"
        ) from None
    authorization = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
    return Proxy(parts.hostname, port, authorization)


def _variable(env: Mapping[str, str], lower: str) -> str:
    # The lowercase name wins even when empty, as curl and urllib read it.
    value = env.get(lower)
    return (env.get(lower.upper(), "") if value is None else value).strip()


def _exempt(host: str, no_proxy: str) -> bool:
    """Whether NO_PROXY (`*`, names, `.domain` suffixes, IPs, CIDR ranges) covers `host`."""
    host = host.lower().rstrip(".")
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        if "/" in entry:
            try:
                if ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        if entry.startswith("["):  # [IPv6] or [IPv6]:port
            name = entry[1:].partition("]")[0]
        else:  # name, name:port, IPv4:port, or a bare IPv6 address (more than one colon)
            name = entry.rsplit(":", 1)[0] if entry.count(":") == 1 else entry
        name = name.lstrip(".").rstrip(".")
        if host == name or host.endswith("." + name):
            return True
    return False


def tls_context(env: Mapping[str, str]) -> ssl.SSLContext:
    """Certificates verified against SSL_CERT_FILE/SSL_CERT_DIR when set, else the
    system's store; where Python finds no system store, certifi's bundle if installed."""
    cafile = env.get("SSL_CERT_FILE") or None
    capath = env.get("SSL_CERT_DIR") or None
    if cafile is None and capath is None and not _system_store():
        try:
            import certifi

            cafile = certifi.where()
        except ImportError:
            pass
    context = ssl.create_default_context(cafile=cafile, capath=capath)
    context.set_alpn_protocols(["http/1.1"])
    return context


def _system_store() -> bool:
    paths = ssl.get_default_verify_paths()
    return any(p and os.path.exists(p) for p in (paths.cafile, paths.capath))


class Response:
    """One response: its status and headers, its body through `chunks()`. The connection
    goes back to the client's pool when the body was read to its end; `close()` (or the
    `with` block's end) closes it otherwise."""

    def __init__(
        self, connection: Connection, status: int, headers: dict[str, str], bodiless: bool
    ) -> None:
        self.status = status
        self.headers = headers
        self._connection: Connection | None = connection
        self._ended = bodiless
        self._body = iter(()) if bodiless else self._decoded(connection.body(headers))
        if bodiless:
            self._release()

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def chunks(self) -> Iterator[bytes]:
        """The body's bytes as they arrive, decoded."""
        return self._body

    def finish(self, limit: int, wait: float) -> bool:
        """Read what is left of the body within `limit` bytes and `wait` seconds, so the
        connection can serve the next request; whether the body ended in time."""
        connection = self._connection
        if connection is None:
            return self._ended
        deadline = time.monotonic() + wait
        connection.deadline = deadline
        try:
            for chunk in self._body:
                limit -= len(chunk)
                if limit < 0 or time.monotonic() > deadline:
                    break
        except TransportError:
            pass
        if not self._ended:
            self.close()
        return self._ended

    def close(self) -> None:
        """Give the connection up: to the pool if the body ended, else closed."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _decoded(self, raw: Iterator[bytes]) -> Iterator[bytes]:
        encoding = self.headers.get("content-encoding", "identity").strip().lower()
        decoder = _decoder(encoding)
        for chunk in raw:
            if decoder is None:
                yield chunk
                continue
            # At most DECODED_PIECE bytes at a time: a small compressed chunk can stand for
            # far more than the reader's size limit, which counts what is yielded.
            while chunk:
                try:
                    piece = decoder.decompress(chunk, DECODED_PIECE)
                except zlib.error as exc:
                    raise Undecodable(f"{encoding} body could not be decoded: {exc}") from None
                chunk = decoder.unconsumed_tail
                if piece:
                    yield piece
        if decoder is not None and not decoder.eof:
            raise Undecodable(f"the {encoding} body ended before its compressed stream did")
        self._ended = True
        self._release()

    def _release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.release()


def _decoder(encoding: str) -> zlib._Decompress | None:
    if encoding in ("identity", ""):
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(wbits=31)
    if encoding == "deflate":
        return zlib.decompressobj(wbits=47)  # zlib or gzip header, as servers send it
    raise Undecodable(f"the server sent the body as {encoding!r}, which loom cannot decode")


class Connection:
    """One socket to an origin, used by one request at a time."""

    def __init__(self, pool: Pool, sock: socket.socket, read_timeout: float | None) -> None:
        self.pool = pool
        self.sock = sock
        self.read_timeout = read_timeout
        self.deadline: float | None = None  # while reading a head or finishing: the end
        self.reusable = True
        # A plain socket is put in non-blocking mode once and waited on with its own
        # poll objects: a socket timeout costs an ioctl per change of it and a poll
        # before every send. TLS keeps the socket's timeout (its buffer hides bytes
        # from poll).
        self._plain = not isinstance(sock, ssl.SSLSocket)
        self._readable = select.poll()
        self._readable.register(sock, select.POLLIN)
        self._writable: select.poll | None = None
        if self._plain:
            sock.setblocking(False)
        # Bytes received and not yet taken: _buffer[_at:]. An index, not a slice per
        # line, so a large receive of many small chunks is not copied once per chunk.
        self._buffer = b""
        self._at = 0

    def exchange(self, head: bytes, body: bytes) -> Response:
        """Send one request and read its status and headers."""
        if not self._plain:
            self.sock.settimeout(self.read_timeout)
        broke: Broken | None = None
        try:
            self._send(head + body if len(body) < 65536 else head)
            if len(body) >= 65536:
                self._send(body)
        except TimeoutError:
            self.discard()
            raise ReadTimedOut("the server took nothing for the timeout") from None
        except OSError as exc:
            # A server may answer before it has read the whole request and close (as
            # nginx does with 413): its answer, if it came, says more than the break.
            self.reusable = False
            broke = Broken(f"the connection broke while sending ({_reason(exc)})")
        try:
            return self._response()
        except TransportError:
            self.discard()
            if broke is not None:
                raise broke from None
            raise
        except BaseException:
            self.discard()
            raise

    def _send(self, data: bytes) -> None:
        # sendall's timeout bounds the whole send, so a large body going out steadily
        # over a slow link timed out; here each part of it gets the timeout.
        view = memoryview(data)
        while view:
            try:
                view = view[self.sock.send(view[:SEND_SIZE]) :]
            except BlockingIOError:
                if self._writable is None:
                    self._writable = select.poll()
                    self._writable.register(self.sock, select.POLLOUT)
                if not self._writable.poll(_poll_ms(self.read_timeout)):
                    raise TimeoutError from None

    def body(self, headers: dict[str, str]) -> Iterator[bytes]:
        """The raw body as its framing gives it: chunked, Content-Length or until close."""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            if "content-length" in headers:
                # Both: the length is ignored (RFC 9112, 6.3), and the connection is not
                # trusted with another request, as the two may disagree on the body's end.
                self.reusable = False
            return self._chunked()
        length = headers.get("content-length")
        if length is not None:
            # One number of plain digits, or repeats of it (RFC 9112, 6.3): a minus, a
            # "+" or a "_" that int() takes, or two lengths, leave the body's end unknown.
            values = {value.strip() for value in length.split(",")}
            size = values.pop() if len(values) == 1 else ""
            if not (size.isascii() and size.isdigit()):
                raise Broken(f"the server sent a bad Content-Length: {length[:40]!r}")
            return self._sized(int(size))
        self.reusable = False
        return self._until_close()

    def release(self) -> None:
        self.deadline = None
        if self.reusable:
            self.pool.put(self)
        else:
            self.discard()

    def close(self) -> None:
        """Closed by a response given up before its end."""
        self.discard()

    def discard(self) -> None:
        self.reusable = False
        try:
            self.sock.close()
        except OSError:
            pass

    def stale(self) -> bool:
        """Whether the idle connection has news (the server closed it, or sent junk)."""
        try:
            if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
                return True
            # poll, not select: select refuses a descriptor past FD_SETSIZE (1024), and
            # every connection of a process with that many files open looked stale.
            readable = self._readable.poll(0)
        except (OSError, ValueError):
            return True
        return bool(readable) or self._at < len(self._buffer)

    def _response(self) -> Response:
        # The whole head, interim answers included, comes within the read timeout: a
        # server trickling it or sending 1xx answers without end never trips a per-read
        # timeout, and the body's progress timeout only starts after the head.
        if self.read_timeout is not None:
            self.deadline = time.monotonic() + self.read_timeout
        while True:
            line = self._line(first=True)
            version, _, rest = line.partition(b" ")
            code, _, _ = rest.partition(b" ")
            if not version.startswith(b"HTTP/1.") or not code.isdigit() or len(code) != 3:
                raise Broken(f"the server sent no HTTP status line: {line[:60]!r}")
            status = int(code)
            headers = self._headers()
            if 100 <= status < 200 and status != 101:
                continue  # 100 Continue and other interim answers
            break
        self.deadline = None
        if not self._plain:
            self.sock.settimeout(self.read_timeout)  # the body's reads: each the full timeout
        connection = headers.get("connection", "").lower()
        if "close" in connection or (version == b"HTTP/1.0" and "keep-alive" not in connection):
            self.reusable = False
        bodiless = status in (204, 304) or (
            headers.get("content-length", "").strip() == "0"
            and "chunked" not in headers.get("transfer-encoding", "").lower()
        )
        return Response(self, status, headers, bodiless)

    def _headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        size = 0
        received = self._received_head()
        for index in range(MAX_HEADERS):
            if received is None:
                line = self._line()
            else:  # its lines, then the blank line that ended it
                line = received[index] if index < len(received) else b""
            if not line:
                return headers
            size += len(line)
            if size > HEADER_LIMIT:
                raise Broken(f"the server sent more than {HEADER_LIMIT // 1024} KiB of headers")
            name, colon, value = line.partition(b":")
            if not colon:
                continue  # not a header; ignored, as clients do
            key = name.strip().decode("latin-1").lower()
            text = value.strip().decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        raise Broken(f"the server sent more than {MAX_HEADERS} headers")

    def _received_head(self) -> list[bytes] | None:
        """The head's header lines, if the blank line that ends it has been received:
        all taken at once (the blank line too), as `_line` would give them; else None,
        with nothing taken."""
        buffer, at = self._buffer, self._at
        if buffer.startswith((b"\n", b"\r\n"), at):
            self._at = buffer.index(b"\n", at) + 1
            return []
        crlf, lf = buffer.find(b"\n\r\n", at), buffer.find(b"\n\n", at)
        if crlf < 0 and lf < 0:
            return None
        end = lf if crlf < 0 or 0 <= lf < crlf else crlf
        self._at = end + (2 if end == lf else 3)
        return [line[:-1] if line.endswith(b"\r") else line for line in buffer[at:end].split(b"\n")]

    def _chunked(self) -> Iterator[bytes]:
        # Chunks already received whole are handed on together (a stream's events often
        # come several to a read); only before a read that may wait is the rest yielded.
        ready: list[bytes] = []
        while True:
            line = self._buffered_line()
            if line is None:
                if ready:
                    yield b"".join(ready)
                    ready = []
                line = self._line()
            size = _chunk_size(line)
            if size == 0:
                if ready:
                    yield b"".join(ready)
                while self._line():
                    pass  # trailers, ignored
                return
            at = self._at
            end = at + size
            if self._buffer[end : end + 2] == b"\r\n":
                ready.append(self._buffer[at:end])
                self._at = end + 2
                continue
            if ready:
                yield b"".join(ready)
                ready = []
            while size:
                piece = self._take(size)
                size -= len(piece)
                yield piece
            if self._line():
                raise Broken("the server sent a chunk longer than its size")

    def _buffered_line(self) -> bytes | None:
        """The next line if it was received whole, else None (nothing taken)."""
        end = self._buffer.find(b"\n", self._at)
        if end < 0:
            return None
        line = self._buffer[self._at : end]
        self._at = end + 1
        return line[:-1] if line.endswith(b"\r") else line

    def _sized(self, size: int) -> Iterator[bytes]:
        while size > 0:
            piece = self._take(size)
            size -= len(piece)
            yield piece

    def _until_close(self) -> Iterator[bytes]:
        if self._at < len(self._buffer):
            yield self._buffer[self._at :]
        self._buffer, self._at = b"", 0
        while data := self._receive(eof_ok=True):
            yield data

    def _take(self, most: int) -> bytes:
        at = self._at
        if at >= len(self._buffer):
            self._buffer, at = self._receive(), 0
        piece = self._buffer[at : at + most]
        self._at = at + len(piece)
        return piece

    def _line(self, *, first: bool = False) -> bytes:
        while (line := self._buffered_line()) is None:
            held = self._buffer[self._at :]
            if len(held) > HEADER_LIMIT:
                raise Broken(f"the server sent a line longer than {HEADER_LIMIT // 1024} KiB")
            more = self._receive(eof_ok=first and not held)
            if not more:
                raise Broken("the server closed the connection without a response")
            self._buffer, self._at = held + more, 0
        return line

    def _receive(self, *, eof_ok: bool = False) -> bytes:
        timeout = self.read_timeout
        if self.deadline is not None:
            timeout = self.deadline - time.monotonic()
            if timeout <= 0:
                raise ReadTimedOut("the response did not come in time")
            if not self._plain:
                self.sock.settimeout(timeout)
        try:
            data = self._recv(timeout) if self._plain else self.sock.recv(RECEIVE_SIZE)
        except TimeoutError:
            raise ReadTimedOut("the server sent nothing for the timeout") from None
        except OSError as exc:
            raise Broken(f"the connection broke ({_reason(exc)})") from None
        if not data and not eof_ok:
            raise Broken("the server closed the connection before the response ended")
        return data

    def _recv(self, timeout: float | None) -> bytes:
        """One receive of the non-blocking plain socket, once it is readable."""
        while True:
            if not self._readable.poll(_poll_ms(timeout)):
                raise TimeoutError
            try:
                return self.sock.recv(RECEIVE_SIZE)
            except BlockingIOError:
                continue  # readable, then not: wait again


def _poll_ms(timeout: float | None) -> int | None:
    """A timeout in seconds as `poll` takes it: whole milliseconds, rounded up; past
    what poll can wait, no limit."""
    if timeout is None or timeout * 1000 >= _POLL_MAX_MS:
        return None
    return max(0, math.ceil(timeout * 1000))


_HEX = b"0123456789abcdefABCDEF"


def _chunk_size(line: bytes) -> int:
    if line and not line.strip(_HEX):
        return int(line, 16)  # plain hex digits: nearly every chunk
    digits = line.split(b";", 1)[0].strip()
    if not digits or digits.strip(_HEX):
        raise Broken(f"the server sent a bad chunk size: {line[:40]!r}")
    return int(digits, 16)


def _reason(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


class Pool:
    """The idle connections to one origin."""

    def __init__(self, client: Client, origin: Origin) -> None:
        self.client = client
        self.origin = origin
        self._idle: list[Connection] = []
        self._lock = threading.Lock()

    def get(self, read_timeout: float | None, connect_timeout: float) -> Connection:
        while True:
            with self._lock:
                connection = self._idle.pop() if self._idle else None
            if connection is None:
                sock = self.client.connect(self.origin, connect_timeout)
                return Connection(self, sock, read_timeout)
            if not connection.stale():
                connection.read_timeout = read_timeout
                return connection
            connection.discard()

    def put(self, connection: Connection) -> None:
        with self._lock:
            if not self.client.closed and len(self._idle) < KEEP_IDLE:
                self._idle.append(connection)
                return
        connection.discard()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.discard()


class Client:
    """Requests to any number of origins, shared by threads; idle connections are kept.

    `timeout` is the longest wait for each read or write (None: no limit), `connect` the
    longest wait for a connection; `env` gives the proxy and certificate variables.
    """

    def __init__(
        self, *, timeout: float | None, connect: float, env: Mapping[str, str] | None = None
    ) -> None:
        self.timeout = timeout
        self.connect_timeout = connect
        self.closed = False
        self._env = dict(env or {})
        self._pools: dict[tuple[str, str, int], Pool] = {}
        self._lock = threading.Lock()
        self._tls: ssl.SSLContext | None = None
        # Checked request heads by (method, URL, headers): `request`.
        self._heads: dict[tuple[str, str, tuple[tuple[str, str], ...]], tuple[Pool, str]] = {}

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes = b"",
        *,
        timeout: float | None | Literal["default"] = "default",
    ) -> Response:
        """Send a request and return its response once the headers have come."""
        # An agent sends the same request line and headers call after call: they are
        # parsed and checked once, then reused.
        key = (method, url, tuple(headers.items()))
        known = self._heads.get(key)
        if known is None:
            known = self._head(method, url, headers)
            if len(self._heads) >= KEEP_HEADS:
                self._heads.clear()
            self._heads[key] = known
        pool, lines = known
        if body or method in ("POST", "PUT", "PATCH"):
            lines = f"{lines}Content-Length: {len(body)}\r\n"
        # A byte of the environment that is not UTF-8 came in as a lone surrogate
        # (os.environ's surrogateescape); it goes out as that byte again.
        head = f"{lines}\r\n".encode("utf-8", "surrogateescape")
        if timeout == "default":
            connection = pool.get(self.timeout, self.connect_timeout)
        else:
            # A timeout of its own bounds the whole wait, connecting included.
            bound = self.connect_timeout if timeout is None else min(timeout, self.connect_timeout)
            connection = pool.get(timeout, bound)
        return connection.exchange(head, body)

    def _head(self, method: str, url: str, headers: Mapping[str, str]) -> tuple[Pool, str]:
        """The pool for `url` and the request's head up to its Content-Length, checked."""
        scheme, host, port, target = split_url(url)
        pool = self._pool(scheme, host, port)
        origin = pool.origin
        if origin.proxy is not None and scheme == "http":
            target = f"http://{origin.authority}{target}"
        lines = [f"{method} {target} HTTP/1.1", f"Host: {origin.authority}"]
        for key, value in headers.items():
            if not _FIELD_OK.fullmatch(value) or not _NAME_OK.fullmatch(key):
                # Never echoed: the value may be a credential.
                raise BadHeader(f"the {key[:40]!r} header holds a control character")
            lines.append(f"{key}: {value}")
        if origin.proxy is not None and scheme == "http" and origin.proxy.authorization:
            lines.append(f"Proxy-Authorization: {origin.proxy.authorization}")
        return pool, "".join(f"{line}\r\n" for line in lines)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the idle connections; a connection in use closes when its response ends."""
        self.closed = True
        with self._lock:
            pools = list(self._pools.values())
        for pool in pools:
            pool.close()

    def connect(self, origin: Origin, timeout: float) -> socket.socket:
        """A new socket to `origin` (through its proxy), TLS set up for https."""
        via = origin.proxy
        host, port = (via.host, via.port) if via is not None else (origin.host, origin.port)
        try:
            # The lookup and TLS both need the name in IDNA, and TLS fails on it only
            # after taking the socket over, which it then leaves open: check it first.
            origin.host.encode("idna")
        except UnicodeError as exc:
            raise ConnectFailed(_reason(exc)) from None
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except TimeoutError:
            raise ConnectTimedOut(f"timed out connecting to {host}:{port}") from None
        except (OSError, UnicodeError) as exc:  # UnicodeError: a name IDNA cannot encode
            raise ConnectFailed(_reason(exc)) from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if via is not None and origin.scheme == "https":
                self._tunnel(sock, origin, via)
            if origin.scheme == "https":
                sock = self._tls_context().wrap_socket(sock, server_hostname=origin.host)
        except TimeoutError:
            sock.close()
            raise ConnectTimedOut(f"timed out setting up the connection to {host}:{port}") from None
        except ssl.SSLCertVerificationError as exc:
            sock.close()
            # Why, as OpenSSL says it: an issuer not trusted, a name that does not match.
            raise ConnectFailed(f"TLS failed: {exc.verify_message.rstrip('.')}") from None
        except ssl.SSLError as exc:
            sock.close()
            raise ConnectFailed(f"TLS failed: {exc.reason or exc}") from None
        except OSError as exc:
            sock.close()
            raise ConnectFailed(_reason(exc)) from None
        except TransportError:
            sock.close()
            raise
        return sock

    def _tunnel(self, sock: socket.socket, origin: Origin, via: Proxy) -> None:
        lines = [f"CONNECT {origin.authority} HTTP/1.1", f"Host: {origin.authority}"]
        if via.authorization:
            lines.append(f"Proxy-Authorization: {via.authorization}")
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        # The whole answer comes within the connect timeout, not each read of it: a
        # proxy trickling it would otherwise hold the call for as long as it likes.
        timeout = sock.gettimeout()
        deadline = None if timeout is None else time.monotonic() + timeout
        answer = b""
        while b"\r\n\r\n" not in answer:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError  # connect() reports it as a connect timeout
                sock.settimeout(left)
            data = sock.recv(4096)
            if not data or len(answer) > HEADER_LIMIT:
                raise ConnectFailed("the proxy closed the connection during CONNECT")
            answer += data
        sock.settimeout(timeout)
        status = answer.split(b"\r\n", 1)[0]
        parts = status.split(b" ", 2)
        if len(parts) < 2 or parts[1] != b"200":
            raise ConnectFailed(f"the proxy refused the tunnel: {status[:80].decode('latin-1')}")

    def _pool(self, scheme: Scheme, host: str, port: int) -> Pool:
        key = (scheme, host, port)
        pool = self._pools.get(key)
        if pool is None:
            with self._lock:
                pool = self._pools.get(key)
                if pool is None:
                    proxy = proxy_for(scheme, host, self._env)
                    pool = self._pools[key] = Pool(self, Origin(scheme, host, port, proxy))
        return pool

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = tls_context(self._env)
        return self._tls
