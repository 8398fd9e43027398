"""A TCP server that answers each HTTP request with scripted raw bytes, for the client's
framing, keep-alive, proxy and TLS cases that a well-behaved server never shows.

Each request (head and Content-Length body) is recorded; the next `Raw` reply is written
piece by piece, and then the connection is kept for the next request, closed, or held
open without a byte more until the server stops.
"""

from __future__ import annotations

import socket
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal


@dataclass
class Raw:
    pieces: list[bytes]
    then: Literal["keep", "close", "hold"] = "keep"
    pause: float = 0.0  # seconds between pieces, for a server that trickles


def reply(body: bytes, *, status: str = "200 OK", headers: str = "", chunked: bool = False) -> Raw:
    """A well-formed reply carrying `body`, as one piece."""
    if chunked:
        framing = "Transfer-Encoding: chunked\r\n"
        payload = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
    else:
        framing = f"Content-Length: {len(body)}\r\n"
        payload = body
    head = f"HTTP/1.1 {status}\r\n{headers}{framing}\r\n".encode()
    return Raw([head + payload])


@dataclass
class Request:
    head: bytes
    body: bytes

    @property
    def line(self) -> str:
        return self.head.split(b"\r\n", 1)[0].decode()

    def header(self, name: str) -> str | None:
        for line in self.head.split(b"\r\n")[1:]:
            key, _, value = line.decode("latin-1").partition(":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None


@dataclass
class RawServer:
    replies: list[Raw]
    tls: tuple[Path, Path] | None = None  # certificate and key: serve https
    host: str = "127.0.0.1"  # "::1" serves IPv6
    requests: list[Request] = field(default_factory=list)
    connections: int = 0
    closed: int = 0  # connections this side has closed

    def __post_init__(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._listener = socket.create_server((self.host, 0), family=family)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._context: ssl.SSLContext | None = None
        if self.tls is not None:
            self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._context.load_cert_chain(*map(str, self.tls))
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    def __enter__(self) -> RawServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._listener.close()
        with self._lock:
            for conn in self._open:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                conn.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._open.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self._context is not None:
                conn = self._context.wrap_socket(conn, server_side=True)
                with self._lock:
                    self._open.append(conn)
            buffer = b""
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                request = Request(head, b"")
                size = int(request.header("content-length") or 0)
                while len(buffer) < size:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                request.body, buffer = buffer[:size], buffer[size:]
                with self._lock:
                    self.requests.append(request)
                    answer = self.replies.pop(0) if self.replies else reply(b"", status="599 No")
                for n, piece in enumerate(answer.pieces):
                    if n and answer.pause and self._stop.wait(answer.pause):
                        return
                    conn.sendall(piece)
                if answer.then == "close":
                    return
                if answer.then == "hold":
                    self._stop.wait()
                    return
        except (OSError, ssl.SSLError):
            return
        finally:
            conn.close()
            with self._lock:
                self.closed += 1
