"""Reading a provider's HTTP response within bounds: in time and in size.

httpx's read timeout is per read, so a server that keeps sending keep-alive comments or
pings never trips it. Here the timeout measures progress of the answer instead: the
provider sets `progressed` whenever a part of the answer arrives (text, a tool-call
fragment), and a response that brings none for `timeout` seconds fails as a transient
timeout. Every byte read counts against a size limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

from loom.errors import ProviderError
from loom.store.files import size_text

_CR, _LF = ord("\r"), ord("\n")


class ResponseReader:
    """The body of one response, read as lines or as one text.

    `chunks` are the decoded body bytes (`httpx.Response.iter_bytes()`); `timeout` is the
    longest wait for progress (None: no deadline); `limit` the most bytes read.
    """

    def __init__(
        self,
        chunks: Iterable[bytes],
        *,
        source: str,
        timeout: float | None,
        limit: int,
        timeout_setting: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._chunks = iter(chunks)
        self._source = source
        self._timeout = timeout
        self._limit = limit
        self._setting = timeout_setting
        self._clock = clock
        self._read = 0
        self._deadline = self._next_deadline()
        # Set by the provider when a part of the answer arrived: the wait for the next
        # one starts now. Set per event (an attribute, not a call); the clock is read
        # once per chunk (`_bounded`): the wait counts from when the chunk that brought
        # this part had been taken in, its events passed on (to a sink that may be
        # slow: that is not the server's wait).
        self.progressed = False
        self._taken = 0.0  # the clock when such a chunk had been taken in

    def __iter__(self) -> Iterator[str]:
        """The body's lines, without their line breaks (\\n, \\r\\n or \\r)."""
        for lines in self.batches():
            yield from lines

    def batches(self) -> Iterator[list[str]]:
        """The body's lines as lists: the lines that each chunk ends, decoded together.

        A stream's events mostly come several to a chunk, so they are split and decoded
        once per chunk rather than once per line. Lines break at exactly \\n, \\r\\n and
        \\r (`str.splitlines` also breaks at U+2028 and others, which JSON may hold raw);
        no byte of a multi-byte UTF-8 character is CR or LF, so decoding several lines at
        once gives what decoding each would.
        """
        pending: list[bytes] = []  # the start of a line not yet ended
        after_cr = False  # the last chunk ended with CR: an LF opening the next is its pair
        for chunk in self._bounded():
            if after_cr and chunk[:1] == b"\n":
                chunk = chunk[1:]
                after_cr = False
            if not chunk:
                continue
            last = chunk[-1]
            after_cr = last == _CR
            if last == _LF or after_cr:
                end = len(chunk)
            else:
                end = max(chunk.rfind(b"\n"), chunk.rfind(b"\r")) + 1
                if not end:
                    pending.append(chunk)
                    continue
            if pending:
                pending.append(chunk[:end])
                block = b"".join(pending)
                pending = []
            else:
                block = chunk[:end]
            if end < len(chunk):
                pending.append(chunk[end:])
            text = block.decode("utf-8", "replace")
            if "\r" in text:
                text = text.replace("\r\n", "\n").replace("\r", "\n")
            lines = text.split("\n")
            lines.pop()  # the block ends with a line break: nothing after it
            yield lines
        if pending:
            yield [b"".join(pending).decode("utf-8", "replace")]

    def drain(self, limit: int) -> bool:
        """Read and drop what is left of the body, at most `limit` more bytes; whether the
        body ended. The lines not yet taken are lost."""
        left = limit
        for chunk in self._chunks:
            left -= len(chunk)
            if left < 0:
                return False
        return True

    def text(self, *, truncate: bool = False) -> str:
        """The whole body as text. Past the limit it fails, or with `truncate` it stops
        reading and returns what came (enough for an error excerpt)."""
        parts: list[bytes] = []
        kept = 0
        for chunk in self._bounded(truncate=truncate):
            parts.append(chunk[: self._limit - kept])
            kept += len(parts[-1])
            if kept >= self._limit:
                break
        return b"".join(parts).decode("utf-8", errors="replace")

    def _bounded(self, *, truncate: bool = False) -> Iterator[bytes]:
        for chunk in self._chunks:
            if self._timeout is not None:
                if self.progressed:
                    self.progressed = False
                    self._deadline = self._taken + self._timeout
                if self._deadline is not None and self._clock() > self._deadline:
                    raise self._stalled()
            self._read += len(chunk)
            if self._read > self._limit and not truncate:
                raise ProviderError(
                    f"{self._source} sent a reply larger than {size_text(self._limit)}; "
                    "gave up reading it.",
                    error_type="response_too_large",
                    transient=False,
                )
            yield chunk
            if self.progressed and self._timeout is not None:
                self._taken = self._clock()

    def _stalled(self) -> ProviderError:
        setting = f" ({self._setting})" if self._setting else ""
        return ProviderError(
            f"{self._source} sent no part of the answer for {self._timeout:g} s{setting}; "
            "gave up waiting.",
            error_type="timeout",
            transient=True,
        )

    def _next_deadline(self) -> float | None:
        return None if self._timeout is None else self._clock() + self._timeout
