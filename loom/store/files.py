"""Reading files named by a user, a config or a message, within a size limit.

A path in loom.yml, on the command line or in an agent's folder may name anything:
`/dev/zero`, a FIFO nobody writes to, a 100 MB log. `read_bounded` is the one way loom
reads such a file: it refuses what is not a regular file without blocking on it, and
never reads more than the limit, so no input can hang a command or fill its memory.
"""

from __future__ import annotations

import json
import os
import stat

from loom.errors import UsageError

# Not typing's: `loom send` and `loom agent ps` do not import typing
# (tests/test_architecture.py). mypy takes it as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, BinaryIO

KiB = 1 << 10
MiB = 1 << 20

# The largest message file loom reads, and the largest body it takes from the user
# (loom send --file/--stdin, agent start --stdin): half, so that the body still fits in
# a message file once JSON has escaped its quotes, backslashes and line breaks.
MESSAGE_FILE_LIMIT = 64 * MiB
MESSAGE_BODY_LIMIT = MESSAGE_FILE_LIMIT // 2
# All of the input of `loom send --lines/--ndjson`, read whole and checked before any
# line is sent: hundreds of thousands of messages; a larger feed is split first.
BULK_INPUT_LIMIT = 256 * MiB
# loom.yml, pipes/<name>.yml and pipe definition files: far past any real weave.
CONFIG_LIMIT = 4 * MiB
# Text put into a model request: system prompts, prompt.md, memory files (4 MiB is about
# a million tokens, more than any model's context).
PROMPT_LIMIT = 4 * MiB
# A single-line file of a process folder (status, pid, model, restarts): a few bytes.
FIELD_LIMIT = 64 * KiB
# loom's own state files (a pipe's state.json and journal, the router's delivery logs):
# a dedupe state of millions of keys stays far below it, a link to /dev/zero does not.
STATE_LIMIT = 256 * MiB


class FileTooLarge(UsageError):
    """A file over the limit for what it is used as."""

    def __init__(self, message: str, *, size: int | None = None) -> None:
        super().__init__(message)
        self.size = size  # bytes, when known before reading


class NotARegularFile(UsageError):
    """A path that names a device, a FIFO, a socket, a directory or (not followed) a link."""

    def __init__(self, message: str, *, kind: str) -> None:
        super().__init__(message)
        self.kind = kind  # "a FIFO", "a device", ...


def size_text(limit: int) -> str:
    """A byte count as people write limits: "64 MiB", "300 KiB", "12 bytes"."""
    for unit, name in ((MiB, "MiB"), (KiB, "KiB")):
        if limit >= unit and limit % unit == 0:
            return f"{limit // unit} {name}"
    return f"{limit} bytes"


def read_bounded(
    path: str | os.PathLike[str], limit: int, what: str, *, follow: bool = True
) -> bytes:
    """The bytes of the regular file at `path`, at most `limit` of them.

    `what` names the file's role in the error ("system_file", "memory file"). Raises
    NotARegularFile for devices, FIFOs and directories (and for a symbolic link when
    `follow` is false), FileTooLarge past `limit`, and OSError (FileNotFoundError,
    PermissionError) as the system reports it. Nothing blocks, and nothing past the
    limit is loaded.
    """
    fd, info = _open_regular(path, what, follow)
    try:
        if info.st_size > limit:
            raise too_large(path, limit, what, size=info.st_size)
        chunks: list[bytes] = []
        left = limit + 1  # one byte past the limit tells a full file from a larger one
        got = 0
        while left > 0:
            wanted = min(left, max(info.st_size, 64 * KiB), MiB)
            chunk = os.read(fd, wanted)
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
            got += len(chunk)
            # A short read that reached the size fstat gave is the end of the file:
            # no second read (with its system call) only to be told so.
            if len(chunk) < wanted and got == info.st_size:
                break
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:
        raise too_large(path, limit, what)  # it grew while being read
    return data


def open_regular(path: str | os.PathLike[str], what: str, *, follow: bool = True) -> BinaryIO:
    """The regular file at `path` opened for reading in binary, without blocking on it.

    For files read line by line or from an offset (logs, journals), where the caller
    bounds what it reads. Raises like `read_bounded`: NotARegularFile, OSError.
    """
    fd, _ = _open_regular(path, what, follow)
    return os.fdopen(fd, "rb")


def _open_regular(
    path: str | os.PathLike[str], what: str, follow: bool
) -> tuple[int, os.stat_result]:
    # O_NONBLOCK: opening a FIFO with no writer would otherwise wait forever. On a
    # regular file the flag changes nothing, so the descriptor is read as usual.
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        # ELOOP: a link refused by O_NOFOLLOW; ENXIO: a socket. Say what the path is.
        if isinstance(exc, FileNotFoundError):
            raise
        kind = _lkind(path)
        if kind is None:
            raise
        raise _not_regular(path, kind, what) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _not_regular(path, _kind_of(info.st_mode), what)
    except BaseException:
        os.close(fd)
        raise
    return fd, info


def read_bounded_text(path: str | os.PathLike[str], limit: int, what: str) -> str:
    """`read_bounded` decoded as UTF-8; undecodable bytes become U+FFFD."""
    return read_bounded(path, limit, what).decode("utf-8", errors="replace")


def read_stream_bounded(stream: BinaryIO, limit: int, what: str) -> bytes:
    """Read a binary stream (stdin) to its end, failing once it passes `limit` bytes."""
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = stream.read(min(MiB, limit + 1 - total))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise too_large(None, limit, what)


def too_large(
    path: str | os.PathLike[str] | None, limit: int, what: str, *, size: int | None = None
) -> FileTooLarge:
    """The error for input past its limit; `path` None for a stream."""
    where = f"{what} {os.fspath(path)}" if path is not None else what
    return FileTooLarge(f"{where} is larger than {size_text(limit)}, the limit for it.", size=size)


def _not_regular(path: str | os.PathLike[str], kind: str, what: str) -> NotARegularFile:
    return NotARegularFile(
        f"{what} {os.fspath(path)} is {kind}, not a regular file; give the path of a file.",
        kind=kind,
    )


def _lkind(path: str | os.PathLike[str]) -> str | None:
    """What `path` itself is (a link is not followed), when it is not a regular file."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return None
    return None if stat.S_ISREG(mode) else _kind_of(mode)


def _kind_of(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    return "not a regular file"


def read_input(
    path: str | os.PathLike[str] | None,
    stream: BinaryIO,
    limit: int,
    what: str,
    *,
    label: str | None = None,
) -> str:
    """Text the user handed a command: the file at `path`, or all of `stream` (stdin)
    when `path` is None, decoded as UTF-8 with U+FFFD for undecodable bytes.

    Past `limit`, or not a regular file: FileTooLarge / NotARegularFile. A file that
    cannot be opened is a UsageError (exit 2) `cannot read LABEL: reason`, LABEL being
    `label` or the path, so the user sees which argument was wrong.
    """
    if path is None:
        return read_stream_bounded(stream, limit, "stdin").decode("utf-8", errors="replace")
    try:
        return read_bounded_text(path, limit, what)
    except OSError as exc:
        raise UsageError(f"cannot read {label or os.fspath(path)}: {exc.strerror}") from None


def json_encoder(
    *,
    ensure_ascii: bool = True,
    separators: tuple[str, str] = (", ", ": "),
    default: Callable[[Any], Any] | None = None,
) -> Callable[[Any], str]:
    """`json.JSONEncoder(...).encode` for values without cycles, built once.

    `JSONEncoder.encode` builds a C encoder on every call; this builds it once, so
    each line of a log or a message costs only the encoding itself. It gives the same
    text; a value that contains itself fails as nested too deeply (RecursionError), as
    a deep one does, instead of as a cycle. Where the C encoder is missing or takes
    other arguments, it is `JSONEncoder.encode` itself.
    """
    reference = json.JSONEncoder(
        ensure_ascii=ensure_ascii, separators=separators, default=default, check_circular=False
    )
    make: Callable[..., Callable[[Any, int], list[str]]] | None
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return reference.encode
    quote = json.encoder.encode_basestring_ascii if ensure_ascii else json.encoder.encode_basestring
    item, key = reference.item_separator, reference.key_separator
    try:
        encoder = make(None, reference.default, quote, None, key, item, False, False, True)
        probe = {"a": [1, -2.5, None, True, "\u00e9\ud800\n"], "b": float("nan"), "c": {}}
        same = "".join(encoder(probe, 0)) == reference.encode(probe)
    except Exception:  # another Python's signature
        same = False
    if not same:
        return reference.encode

    def encode(value: Any) -> str:
        return "".join(encoder(value, 0))

    return encode


# The C scanner of json.loads's own decoder: it reads one value from a position and
# says where it ended. A text that is exactly one value (a stream event, a state file)
# needs nothing more; anything else goes through json.loads, which judges it.
_scan: Callable[[str, int], tuple[Any, int]] = vars(json.JSONDecoder())["scan_once"]


def load_json(data: str | bytes) -> Any:
    """`json.loads`, with JSON nested too deeply for the decoder (which raises
    RecursionError) reported as the ValueError of any other bad JSON, so every reader
    of a file that may be hostile handles both with one `except ValueError`."""
    try:
        if isinstance(data, str):
            try:
                value, end = _scan(data, 0)
            except StopIteration:  # no value at the start (whitespace?): json.loads says
                end = -1
            # Only JSON's own whitespace may follow (a file's last newline).
            if end == len(data) or (end > 0 and not data[end:].strip(" \t\n\r")):
                return value
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply to decode") from None
