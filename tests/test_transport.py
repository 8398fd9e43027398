"""The HTTP/1.1 client under the providers, against raw servers over real sockets: every
framing (chunked, Content-Length, to close), bodies cut anywhere, broken servers, kept
and stale connections, compression, timeouts, proxies and TLS."""

from __future__ import annotations

import gzip
import os
import resource
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_kit import make_tls
from conftest import wait_for
from hypothesis import given, settings
from hypothesis import strategies as st
from raw_http import Raw, RawServer, reply

from loom.providers import transport

_made: list[transport.Client] = []


def client(**env: str) -> transport.Client:
    """A client closed when the test ends (the autouse fixture below)."""
    _made.append(transport.Client(timeout=5.0, connect=5.0, env=env))
    return _made[-1]


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _made:
        _made.pop().close()


def body_of(response: transport.Response) -> bytes:
    return b"".join(response.chunks())


def get(server: RawServer, c: transport.Client, path: str = "/x") -> bytes:
    with c.request("GET", server.url + path, {}) as response:
        assert response.status == 200
        return body_of(response)


# ---------------------------------------------------------------- framing


def chunked(pieces: list[bytes], *, lf_only: bool, extension: bool, trailer: bool) -> bytes:
    end = b"\n" if lf_only else b"\r\n"
    out = b""
    for piece in pieces:
        size = b"%x" % len(piece) + (b";name=value" if extension else b"")
        out += size + end + piece + end
    out += b"0" + end + (b"Trailer-Field: x" + end if trailer else b"") + end
    return out


@settings(max_examples=60, deadline=None)
@given(
    pieces=st.lists(st.binary(min_size=1, max_size=40), max_size=6),
    receive=st.sampled_from([1, 2, 3, 7, 64, 65536]),
    lf_only=st.booleans(),
    extension=st.booleans(),
    trailer=st.booleans(),
)
def test_a_chunked_body_read_in_any_split_is_the_body(
    pieces: list[bytes], receive: int, lf_only: bool, extension: bool, trailer: bool
) -> None:
    wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(
        pieces, lf_only=lf_only, extension=extension, trailer=trailer
    )
    old = transport.RECEIVE_SIZE
    transport.RECEIVE_SIZE = receive  # every recv returns at most this many bytes
    try:
        with RawServer([Raw([wire]), reply(b"next")]) as server, client() as c:
            assert get(server, c) == b"".join(pieces)
            # The body ended where its framing says: the connection serves the next one.
            assert get(server, c) == b"next"
            assert server.connections == 1
    finally:
        transport.RECEIVE_SIZE = old


@settings(max_examples=60, deadline=None)
@given(
    fields=st.lists(
        st.tuples(
            st.sampled_from(["X-A", "x-a", "X-B", "no colon here"]),
            st.text(alphabet="ab ;=:\t\xa0\xe9", max_size=6),
        ),
        max_size=5,
    ),
    ends=st.lists(st.sampled_from([b"\r\n", b"\n"]), min_size=8, max_size=8),
    receive=st.sampled_from([1, 2, 5, 64, 65536]),
)
def test_a_head_read_in_any_split_gives_its_headers(
    fields: list[tuple[str, str]], ends: list[bytes], receive: int
) -> None:
    # Lines ended by CRLF or a bare LF, received whole or a few bytes at a time.
    lines = [b"HTTP/1.1 200 OK", b"Content-Length: 5"]
    expected = {"content-length": "5"}
    for name, value in fields:
        if name == "no colon here":
            lines.append(name.encode())  # not a header: skipped
            continue
        lines.append(f"{name}:{value}".encode("latin-1"))
        text = value.encode("latin-1").strip().decode("latin-1")  # ASCII spaces only
        key = name.lower()
        expected[key] = f"{expected[key]}, {text}" if key in expected else text
    # A body that holds what a blank line looks like, after a head that may end in LF.
    body = b"o\n\r\nk"
    wire = b"".join(line + end for line, end in zip(lines + [b""], ends, strict=False)) + body
    old = transport.RECEIVE_SIZE
    transport.RECEIVE_SIZE = receive
    try:
        with RawServer([Raw([wire]), reply(b"next")]) as server, client() as c:
            with c.request("GET", server.url, {}) as response:
                assert response.headers == expected
                assert body_of(response) == body
            assert get(server, c) == b"next"  # the head and body ended where they should
    finally:
        transport.RECEIVE_SIZE = old


def test_a_sized_body_and_a_body_to_the_close() -> None:
    to_close = Raw([b"HTTP/1.0 200 OK\r\n\r\nall of ", b"it"], then="close")
    with RawServer([reply(b"sized body"), to_close, reply(b"again")]) as server:
        c = client()
        assert get(server, c) == b"sized body"
        assert get(server, c) == b"all of it"
        assert get(server, c) == b"again"
        # The sized body's connection was kept; the one read to its close was not.
        assert server.connections == 2


def test_interim_answers_are_skipped_and_headers_are_read_case_blind() -> None:
    wire = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nX-Two: a\r\nx-two: b\r\n"
    wire += b"CONTENT-LENGTH: 2\r\n\r\nok"
    with RawServer([Raw([wire])]) as server:
        with client().request("GET", server.url, {}) as response:
            assert response.status == 200
            assert response.headers["x-two"] == "a, b"
            assert body_of(response) == b"ok"


def test_a_204_has_no_body_and_keeps_the_connection() -> None:
    with RawServer([Raw([b"HTTP/1.1 204 No Content\r\n\r\n"]), reply(b"after")]) as server:
        c = client()
        with c.request("POST", server.url, {}, b"{}") as response:
            assert response.status == 204 and body_of(response) == b""
        assert get(server, c) == b"after"
        assert server.connections == 1


def test_connection_close_is_honoured() -> None:
    closing = reply(b"one", headers="Connection: close\r\n")
    closing.then = "close"
    with RawServer([closing, reply(b"two")]) as server:
        c = client()
        assert get(server, c) == b"one"
        assert get(server, c) == b"two"
        assert server.connections == 2


def test_an_idle_connection_the_server_closed_is_not_used_again() -> None:
    once = reply(b"one")
    once.then = "close"  # closes after answering, without saying so
    with RawServer([once, reply(b"two")]) as server:
        c = client()
        assert get(server, c) == b"one"
        wait_for(lambda: server.closed == 1, timeout=5, what="the server's close")
        assert get(server, c) == b"two"
        assert server.connections == 2


def test_connections_are_kept_in_a_process_with_over_a_thousand_files_open() -> None:
    # select() refuses descriptors past FD_SETSIZE (1024), which a busy process reaches.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip("cannot open 1200 files here")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    held = [open(os.devnull) for _ in range(1100)]
    try:
        with RawServer([reply(b"one"), reply(b"two")]) as server:
            c = client()
            assert get(server, c) == b"one"
            assert get(server, c) == b"two"
            assert server.connections == 1
    finally:
        for f in held:
            f.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_request_is_what_the_server_gets() -> None:
    with RawServer([reply(b"")]) as server:
        body = '{"text": "é"}'.encode()
        with client().request(
            "POST", server.url + "/v1/chat?x=1", {"Authorization": "Bearer k"}, body
        ) as response:
            body_of(response)
        [request] = server.requests
    assert request.line == "POST /v1/chat?x=1 HTTP/1.1"
    assert request.header("host") == f"127.0.0.1:{server.port}"
    assert request.header("authorization") == "Bearer k"
    assert request.header("content-length") == str(len(body))
    assert request.body == body


def test_a_large_request_body_arrives_whole() -> None:
    body = b"x" * (3 * 1024 * 1024 + 7)
    with RawServer([reply(b"got it")]) as server:
        with client().request("POST", server.url, {}, body) as response:
            assert body_of(response) == b"got it"
        assert server.requests[0].body == body


def accept_a_request_head(listener: socket.socket) -> tuple[socket.socket, bytes]:
    """The next connection, its request head read; and what came after the head."""
    conn, _ = listener.accept()
    head = b""
    while b"\r\n\r\n" not in head:
        head += conn.recv(65536)
    return conn, head.partition(b"\r\n\r\n")[2]


def test_a_large_body_taken_slowly_but_steadily_does_not_time_out() -> None:
    # The server takes its first 8 MiB at 64 KiB every 10 ms: sending takes over a
    # second, each part of it well within the 0.5 s timeout. The rest it takes at once,
    # so what the buffers hold when sending ends is not a wait for the answer.
    body = b"x" * (24 * 1024 * 1024)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    taken: list[int] = []

    def serve() -> None:
        conn, rest = accept_a_request_head(listener)
        with conn:
            size = len(rest)
            while size < len(body):
                if not (data := conn.recv(65536)):
                    return
                size += len(data)
                if size < 8 * 1024 * 1024:
                    time.sleep(0.01)
            taken.append(size)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    with listener, transport.Client(timeout=0.5, connect=5, env={}) as c:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
        with c.request("POST", url, {}, body) as response:
            assert body_of(response) == b"ok"
    thread.join()
    assert taken == [len(body)]


def test_a_server_that_takes_nothing_of_a_large_body_times_out_the_send() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    held: list[socket.socket] = []
    thread = threading.Thread(target=lambda: held.append(listener.accept()[0]), daemon=True)
    thread.start()
    started = time.monotonic()
    with listener, transport.Client(timeout=0.3, connect=5, env={}) as c:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
        with pytest.raises(transport.ReadTimedOut, match="took nothing"):
            c.request("POST", url, {}, b"x" * (24 * 1024 * 1024))
    assert time.monotonic() - started < 4
    thread.join()
    for conn in held:
        conn.close()


def test_an_answer_sent_before_the_body_was_taken_is_read_though_sending_broke() -> None:
    # As nginx refuses a body over its limit: answer at once, close, never read it.
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = accept_a_request_head(listener)
        with conn:
            conn.sendall(reply(b"too large", status="413 Payload Too Large").pieces[0])

    threading.Thread(target=serve, daemon=True).start()
    with listener, transport.Client(timeout=5, connect=5, env={}) as c:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
        with c.request("POST", url, {}, b"x" * (64 * 1024 * 1024)) as response:
            assert response.status == 413
            assert body_of(response) == b"too large"


# ---------------------------------------------------------------- broken servers


@pytest.mark.parametrize(
    ("pieces", "says"),
    [
        ([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"], "closed"),
        ([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n"], "chunk size"),
        ([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcd\r\n"], "longer"),
        ([b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"], "closed"),
        ([b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\nshort"], "Content-Length"),
        ([b"HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\nabc"], "Content-Length"),
        ([b"HTTP/1.1 200 OK\r\nContent-Length: 1_0\r\n\r\n0123456789"], "Content-Length"),
        (
            [b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde"],
            "Content-Length",
        ),
        ([b"\x00\xffgarbage\r\n\r\n"], "no HTTP status line"),
        ([b""], "without a response"),
        ([b"HTTP/1.1 200 OK\r\n" + b"X: " + b"y" * 70000], "KiB"),
        ([b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 300 + b"\r\n"], "more than 200 headers"),
    ],
)
def test_a_broken_response_is_one_clear_error(pieces: list[bytes], says: str) -> None:
    with RawServer([Raw(pieces, then="close")]) as server:
        with pytest.raises(transport.Broken, match=says):
            with client().request("GET", server.url, {}) as response:
                body_of(response)


def test_gzip_and_deflate_bodies_are_decoded_and_others_refused() -> None:
    text = b"compressed despite being asked not to " * 20
    gz = reply(gzip.compress(text), headers="Content-Encoding: gzip\r\n", chunked=True)
    deflate = reply(zlib.compress(text), headers="Content-Encoding: deflate\r\n")
    brotli = reply(b"\x01\x02", headers="Content-Encoding: br\r\n")
    bad = reply(b"not gzip at all", headers="Content-Encoding: gzip\r\n")
    with RawServer([gz, deflate, brotli, bad]) as server:
        c = client()
        assert get(server, c) == text
        assert get(server, c) == text
        for says in ("'br'", "could not be decoded"):
            with pytest.raises(transport.Undecodable, match=says):
                get(server, c)


def test_a_compressed_body_is_decoded_in_bounded_pieces_and_must_be_whole() -> None:
    bomb = gzip.compress(b"\0" * (20 * 1024 * 1024))  # 20 MiB from about 20 KiB
    cut = gzip.compress(b"the end is missing " * 100)[:-12]
    with RawServer(
        [
            reply(bomb, headers="Content-Encoding: gzip\r\n"),
            reply(cut, headers="Content-Encoding: gzip\r\n"),
        ]
    ) as server:
        c = client()
        with c.request("GET", server.url, {}) as response:
            sizes = [len(piece) for piece in response.chunks()]
        assert sum(sizes) == 20 * 1024 * 1024
        assert max(sizes) <= transport.DECODED_PIECE
        with pytest.raises(transport.Undecodable, match="ended before its compressed stream"):
            get(server, c)


def test_a_body_framed_both_ways_is_read_chunked_and_its_connection_not_kept() -> None:
    both = Raw(
        [
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n"
        ]
    )
    with RawServer([both, reply(b"next")]) as server:
        c = client()
        assert get(server, c) == b"hello"
        assert get(server, c) == b"next"
        assert server.connections == 2


def test_a_timeout_longer_than_poll_can_wait_is_no_limit() -> None:
    # poll takes a C int of milliseconds: about 24 days.
    with RawServer([reply(b"ok")]) as server:
        with transport.Client(timeout=3e6, connect=5, env={}) as c:
            with c.request("POST", server.url, {}, b"x" * (1 << 20)) as response:
                assert body_of(response) == b"ok"


def test_a_path_is_sent_percent_encoded_a_non_utf8_byte_as_that_byte() -> None:
    # os.environ gives a byte that is not UTF-8 as a lone surrogate.
    assert transport.split_url("http://h/my models/\udcff?q=a b") == (
        "http",
        "h",
        80,
        "/my%20models/%FF?q=a%20b",
    )


def test_a_silent_server_times_out_and_a_closed_port_refuses() -> None:
    with RawServer([Raw([b"HTTP/1.1 200 OK\r\n"], then="hold")]) as server:
        started = time.monotonic()
        with pytest.raises(transport.ReadTimedOut):
            with transport.Client(timeout=0.3, connect=5, env={}) as c:
                c.request("GET", server.url, {})
        assert time.monotonic() - started < 4
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    with pytest.raises(transport.ConnectFailed, match="refused"):
        client().request("GET", f"http://127.0.0.1:{port}/", {})


@pytest.mark.parametrize(
    "pieces",
    [
        [b"HTTP/1.1 102 Processing\r\n\r\n"] * 300,  # interim answers without end
        [b"HTTP/1.1 200 OK\r\nX-Slow: "] + [b"y"] * 300,  # a header a byte at a time
    ],
)
def test_a_head_that_never_ends_times_out_though_bytes_keep_coming(pieces: list[bytes]) -> None:
    # Each piece comes well within the read timeout; the head as a whole does not.
    with RawServer([Raw(pieces, then="close", pause=0.1)]) as server:
        with transport.Client(timeout=1.0, connect=5, env={}) as c:
            with pytest.raises(transport.ReadTimedOut):
                c.request("GET", server.url, {})


def open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_host_name_that_cannot_be_encoded_fails_to_connect_and_leaves_nothing_open() -> None:
    # A label over 63 characters cannot be looked up (IDNA refuses it before any DNS).
    name = f"{'a' * 64}.example"
    with pytest.raises(transport.ConnectFailed, match="idna"):
        client().request("GET", f"http://{name}/", {})
    # Through a proxy the name is first needed for TLS, after the tunnel is set up.
    tunnels = [Raw([b"HTTP/1.1 200 Connection established\r\n\r\n"], then="hold")] * 3
    before = open_files()
    with RawServer(tunnels) as proxy:
        c = client(HTTPS_PROXY=proxy.url)
        for _ in range(3):
            with pytest.raises(transport.ConnectFailed, match="idna") as caught:
                c.request("GET", f"https://{name}/", {})
    assert open_files() == before, caught


def test_finish_keeps_a_connection_whose_end_comes_and_drops_one_held_open() -> None:
    events = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\ndone\r\n"
    with RawServer([Raw([events, b"0\r\n\r\n"]), Raw([events], then="hold"), reply(b"x")]) as s:
        c = client()
        for held in (False, True):
            response = c.request("GET", s.url, {})
            assert next(iter(response.chunks())) == b"done"
            started = time.monotonic()
            assert response.finish(64 * 1024, 0.3) is not held
            assert time.monotonic() - started < 3
        assert get(s, c) == b"x"
        # The first connection was kept for the second request; the held one was dropped.
        assert s.connections == 2


# ---------------------------------------------------------------- proxies and TLS


class Proxy:
    """An http:// proxy: CONNECT tunnels, absolute-form requests forwarded."""

    def __init__(self) -> None:
        self.seen: list[bytes] = []
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://user:p%40ss@127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._listener.close()
        for s in self._sockets:
            s.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._sockets.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            data = conn.recv(65536)
            if not data:
                return
            head += data
        self.seen.append(head.split(b"\r\n\r\n")[0])
        line = head.split(b"\r\n")[0].split()
        target = line[1].decode()
        if line[0] == b"CONNECT":
            host, port = target.rsplit(":", 1)
            upstream = socket.create_connection((host, int(port)))
            self._sockets.append(upstream)
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            hostport = target.split("/")[2]
            host, port = hostport.rsplit(":", 1)
            upstream = socket.create_connection((host, int(port)))
            self._sockets.append(upstream)
            upstream.sendall(head)
        for a, b in ((conn, upstream), (upstream, conn)):
            threading.Thread(target=_pipe, args=(a, b), daemon=True).start()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    p = Proxy()
    yield p
    p.close()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return make_tls(tmp_path_factory.mktemp("tls"))


def test_http_goes_through_the_proxy_in_absolute_form(proxy: Proxy) -> None:
    with RawServer([reply(b"via proxy")]) as server:
        assert get(server, client(HTTP_PROXY=proxy.url)) == b"via proxy"
    [head] = proxy.seen
    assert head.startswith(f"GET {server.url}/x HTTP/1.1".encode())
    assert b"Proxy-Authorization: Basic dXNlcjpwQHNz" in head  # user:p@ss


def test_https_tunnels_through_the_proxy_and_verifies_the_server(
    proxy: Proxy, tls: tuple[Path, Path, Path]
) -> None:
    ca, cert, key = tls
    with RawServer([reply(b"secret")], tls=(cert, key)) as server:
        c = client(https_proxy=proxy.url, SSL_CERT_FILE=str(ca))
        assert get(server, c) == b"secret"
    [head] = proxy.seen
    assert head.startswith(f"CONNECT 127.0.0.1:{server.port} HTTP/1.1".encode())


def test_no_proxy_exempts_hosts(proxy: Proxy) -> None:
    with RawServer([reply(b"direct")]) as server:
        c = client(HTTP_PROXY=proxy.url, NO_PROXY="example.com,127.0.0.0/8")
        assert get(server, c) == b"direct"
    assert proxy.seen == []
    assert transport._exempt("api.example.com", "example.com")
    assert transport._exempt("api.example.com", ".example.com")
    assert not transport._exempt("example.com.evil", "example.com")
    assert transport._exempt("anything", "*")


def test_an_empty_lowercase_proxy_variable_overrides_the_uppercase_one(proxy: Proxy) -> None:
    # As curl and Python's urllib read them: `http_proxy= loom ...` turns a proxy off.
    with RawServer([reply(b"direct")]) as server:
        assert get(server, client(HTTP_PROXY=proxy.url, http_proxy="")) == b"direct"
    assert proxy.seen == []


def test_no_proxy_exempts_an_ipv6_host_written_with_its_port(proxy: Proxy) -> None:
    with RawServer([reply(b"direct")], host="::1") as server:
        c = client(HTTP_PROXY=proxy.url, NO_PROXY=f"example.com,[::1]:{server.port}")
        assert get(server, c) == b"direct"
    assert proxy.seen == []
    assert server.requests[0].header("host") == f"[::1]:{server.port}"


def test_a_proxy_trickling_its_answer_to_connect_times_out() -> None:
    trickle = Raw([b"HTTP/1.1 200 Connection established\r\nX: "] + [b"y"] * 300, "close", 0.1)
    with RawServer([trickle]) as proxy:
        with transport.Client(timeout=5, connect=1.0, env={"HTTPS_PROXY": proxy.url}) as c:
            with pytest.raises(transport.ConnectTimedOut):
                c.request("GET", "https://api.example.com/", {})


def test_a_proxy_that_is_not_http_is_refused() -> None:
    with pytest.raises(ValueError, match="only http:// proxies"):
        transport.proxy_for("https", "api.openai.com", {"HTTPS_PROXY": "socks5://h:1080"})


def test_tls_refuses_a_server_its_certificates_do_not_vouch_for(
    tls: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    ca, cert, key = tls
    other_ca = make_tls(tmp_path)[0]
    with RawServer([reply(b"trusted")], tls=(cert, key)) as server:
        with pytest.raises(transport.ConnectFailed, match="TLS failed"):
            get(server, client(SSL_CERT_FILE=str(other_ca)))
        assert get(server, client(SSL_CERT_FILE=str(ca))) == b"trusted"


def test_tls_to_a_server_under_another_name_says_the_name_does_not_match(
    tls: tuple[Path, Path, Path],
) -> None:
    ca, cert, key = tls  # the certificate is for 127.0.0.1
    with RawServer([reply(b"x")], tls=(cert, key)) as server:
        url = server.url.replace("127.0.0.1", "localhost")
        with pytest.raises(transport.ConnectFailed, match="Hostname mismatch"):
            client(SSL_CERT_FILE=str(ca)).request("GET", url, {})


def test_a_header_with_a_line_break_is_refused_before_anything_is_sent() -> None:
    with RawServer([reply(b"x")]) as server:
        with pytest.raises(transport.BadHeader, match="'X-Key' header"):
            client().request("GET", server.url, {"X-Key": "k\r\nX-Injected: 1"})
        assert server.requests == []
