"""The message: one JSON object in a file named `{ts_ms}-{id}.msg` (SPEC 2)."""

from __future__ import annotations

import json
import os
import re

from loom.errors import UnreadableMessage, UnsupportedVersion
from loom.store.atomic import utf8
from loom.store.files import (
    MESSAGE_FILE_LIMIT,
    FileTooLarge,
    NotARegularFile,
    json_encoder,
    read_bounded,
)
from loom.store.ids import new_id, new_ids

# Not typing's: `loom send` and `loom agent ps` do not import typing
# (tests/test_architecture.py). mypy takes it as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SCHEMA_VERSION = 1
# Ids are letters and digits: ULIDs, and the original loom's 16 hex chars (SPEC 2).
ID_RE = re.compile(r"[A-Za-z0-9]{1,64}")
FILENAME_RE = re.compile(r"(\d{1,16})-([A-Za-z0-9]{1,64})\.msg")
_KNOWN = ("v", "id", "from", "ts", "body", "origin", "error", "to")
_KNOWN_SET = frozenset(_KNOWN)
# `"batch": true` marks a body that is the JSON list of the envelopes a `window` or
# `buffer` gathered (docs/format.md). It is an extra field, which older readers keep as
# they keep any other, and it describes the body: a new body drops it.
BATCH_FIELD = "batch"
# Built once (`json_encoder`): `JSONEncoder.encode` builds a C encoder on every call.
_to_json = json_encoder(ensure_ascii=False, separators=(",", ":"))
# A message file larger than this is unreadable, and is never loaded into memory. Bodies
# of tens of megabytes are legitimate (whole documents); hundreds are a mistake.
MAX_BYTES = MESSAGE_FILE_LIMIT


class Message:
    """A loom message. `sender` is the JSON field `from`. Messages are immutable; two are
    equal (and hash alike) when their fields are, `extra` aside."""

    # A plain class rather than a frozen dataclass: `loom send` does not import
    # dataclasses (docs/performance.md, "CLI start-up").
    __slots__ = ("id", "sender", "ts", "body", "origin", "error", "to", "v", "extra")

    id: str
    sender: str
    ts: int
    body: str
    origin: str | None
    error: bool
    to: tuple[str, ...] | None
    v: int
    # Fields written by other tools are kept, so a message survives a round trip.
    extra: dict[str, Any]

    def __init__(
        self,
        id: str,
        sender: str,
        ts: int,
        body: str,
        origin: str | None = None,
        error: bool = False,
        to: tuple[str, ...] | None = None,
        v: int = SCHEMA_VERSION,
        extra: dict[str, Any] | None = None,
    ) -> None:
        fields = (id, sender, ts, body, origin, error, to, v, {} if extra is None else extra)
        for set_field, value in zip(_SLOT_SETTERS, fields, strict=True):
            set_field(self, value)

    def _compared(self) -> tuple[object, ...]:
        return (self.id, self.sender, self.ts, self.body, self.origin, self.error, self.to, self.v)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return self._compared() == other._compared()

    def __hash__(self) -> int:
        return hash(self._compared())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"Message({fields})"

    def __setattr__(self, name: str, value: object) -> None:
        raise _frozen(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise _frozen(f"cannot delete field {name!r}")

    def __reduce__(self) -> tuple[object, ...]:
        # Pickling and copying rebuild the message through its slots, not __setattr__.
        return (_build, tuple(getattr(self, name) for name in self.__slots__))

    @property
    def filename(self) -> str:
        """The canonical file name, `{ts}-{id}.msg`."""
        return f"{self.ts}-{self.id}.msg"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"v": self.v, "id": self.id, "from": self.sender, "ts": self.ts}
        d["body"] = self.body
        if self.origin:
            d["origin"] = self.origin
        if self.error:
            d["error"] = True
        if self.to is not None:
            d["to"] = list(self.to)
        for key, value in self.extra.items():
            d.setdefault(key, value)
        return d

    def to_json(self) -> str:
        """One line of JSON, UTF-8 safe (non-ASCII kept as is)."""
        return _to_json(self.to_dict())

    def to_bytes(self) -> bytes:
        return utf8(self.to_json())

    def reply(
        self,
        sender: str,
        body: str,
        *,
        parent_filename: str | None = None,
        error: bool = False,
        to: tuple[str, ...] | None = None,
    ) -> Message:
        """A new message produced from this one, its origin extended by this file's name."""
        return new_message(
            sender,
            body,
            origin=child_origin(self.origin, parent_filename or self.filename),
            error=error,
            to=to,
        )

    def with_to(self, to: tuple[str, ...] | None) -> Message:
        """This message with `to` set."""
        m = self
        return _build(m.id, m.sender, m.ts, m.body, m.origin, m.error, to, m.v, m.extra)

    @property
    def is_batch(self) -> bool:
        """Whether the body is a batch of envelopes (marked `"batch": true`)."""
        return self.extra.get(BATCH_FIELD) is True

    def with_body(self, body: str) -> Message:
        """This message with another body (what map, split and command make); a batch
        marker is dropped, since it describes the old body."""
        m = self
        extra = m.extra
        if BATCH_FIELD in extra:
            extra = {k: v for k, v in extra.items() if k != BATCH_FIELD}
        return _build(m.id, m.sender, m.ts, body, m.origin, m.error, m.to, m.v, extra)

    def as_batch(self, body: str) -> Message:
        """This message with `body`, a JSON list of envelopes, and the batch marker."""
        m = self
        extra = {**m.extra, BATCH_FIELD: True}
        return _build(m.id, m.sender, m.ts, body, m.origin, m.error, m.to, m.v, extra)


# Message's __setattr__ refuses every change, so its fields are written through their
# slots' own setters. Messages whose fields are known to be valid are built without
# __init__'s arguments (about 2 us): the pipe engine makes several messages per event.
_SLOT_SETTERS = tuple(Message.__dict__[name].__set__ for name in Message.__slots__)


def _frozen(sentence: str) -> AttributeError:
    # What a frozen dataclass raises; dataclasses is imported only for it.
    from dataclasses import FrozenInstanceError

    return FrozenInstanceError(sentence)


def _build(
    mid: str,
    sender: str,
    ts: int,
    body: str,
    origin: str | None,
    error: bool,
    to: tuple[str, ...] | None,
    v: int,
    extra: dict[str, Any],
) -> Message:
    msg: Message = object.__new__(Message)
    set_id, set_sender, set_ts, set_body, set_origin, set_error, set_to, set_v, set_extra = (
        _SLOT_SETTERS
    )
    set_id(msg, mid)
    set_sender(msg, sender)
    set_ts(msg, ts)
    set_body(msg, body)
    set_origin(msg, origin)
    set_error(msg, error)
    set_to(msg, to)
    set_v(msg, v)
    set_extra(msg, extra)
    return msg


def child_origin(parent_origin: str | None, parent_filename: str) -> str:
    """The origin of a message produced from a parent (SPEC 2, origin propagation)."""
    return f"{parent_origin}/{parent_filename}" if parent_origin else parent_filename


def new_message(
    sender: str,
    body: str,
    *,
    origin: str | None = None,
    error: bool = False,
    to: tuple[str, ...] | None = None,
) -> Message:
    """A fresh message with a new monotonic ULID and the current time."""
    ts, mid = new_id()
    return _build(mid, sender, ts, body, origin or None, error, to, SCHEMA_VERSION, {})


def new_messages(sender: str, bodies: list[str], origins: list[str] | None = None) -> list[Message]:
    """A fresh message for each body (with the origin at the same place in `origins`),
    as `new_message` would make them one by one."""
    made = new_ids(len(bodies))
    if origins is None:
        return [
            _build(mid, sender, ts, body, None, False, None, SCHEMA_VERSION, {})
            for (ts, mid), body in zip(made, bodies, strict=True)
        ]
    return [
        _build(mid, sender, ts, body, origin or None, False, None, SCHEMA_VERSION, {})
        for (ts, mid), body, origin in zip(made, bodies, origins, strict=True)
    ]


def from_dict(d: Any) -> Message:
    """Validate a decoded JSON value as a message; raise UnreadableMessage or UnsupportedVersion."""
    if not isinstance(d, dict):
        raise UnreadableMessage("not a JSON object")
    v = d.get("v")
    if type(v) is not int:
        raise UnreadableMessage("field 'v' must be an integer")
    if v > SCHEMA_VERSION:
        raise UnsupportedVersion(
            f"message schema v{v} is newer than this loom supports (v{SCHEMA_VERSION}); "
            "upgrade loom to read it"
        )
    mid, sender, ts, body = d.get("id"), d.get("from"), d.get("ts"), d.get("body")
    if not isinstance(mid, str) or not ID_RE.fullmatch(mid):
        raise UnreadableMessage("field 'id' must be letters and digits")
    if not isinstance(sender, str):
        raise UnreadableMessage("field 'from' must be a string")
    if type(ts) is not int or ts < 0:
        # A negative stamp would name the file `-5-id.msg`, outside every time order.
        raise UnreadableMessage("field 'ts' must be a non-negative integer")
    if not isinstance(body, str):
        raise UnreadableMessage("field 'body' must be a string")
    origin = d.get("origin")
    if origin is not None and not isinstance(origin, str):
        raise UnreadableMessage("field 'origin' must be a string")
    error = d.get("error", False)
    if not isinstance(error, bool):
        raise UnreadableMessage("field 'error' must be true or false")
    to = d.get("to")
    if to is not None:
        if not isinstance(to, list) or not all(isinstance(t, str) for t in to):
            raise UnreadableMessage("field 'to' must be a list of strings")
        to = tuple(to)
    # Nearly every message has no fields of other tools: no copy to make.
    extra = {} if d.keys() <= _KNOWN_SET else {k: x for k, x in d.items() if k not in _KNOWN}
    return _build(mid, sender, ts, body, origin or None, error, to, v, extra)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


# Python's json reads NaN and Infinity, which are not JSON (RFC 8259 section 6); a file
# holding them could not be read by jq or any other tool, so it is not a message.
_decode = json.JSONDecoder(parse_constant=_no_constant).decode


def parse(data: bytes | str) -> Message:
    """Decode one message from its file contents; raise UnreadableMessage if it is none."""
    try:
        if isinstance(data, str):
            text = data
        elif data[:1] == b"{" and data[1:2] != b"\x00":
            text = data.decode("utf-8")  # what json.detect_encoding says of such a start
        else:
            text = data.decode(json.detect_encoding(data))
        decoded = _decode(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UnreadableMessage(f"not valid JSON ({exc})") from None
    except RecursionError:
        raise UnreadableMessage("not a message: JSON nested too deeply") from None
    return from_dict(decoded)


def read_file(path: str | os.PathLike[str]) -> bytes:
    """The contents of a message file, read safely whatever the file is.

    Anything but a regular file (a FIFO, a symbolic link, a directory, a socket, a
    device) and any file over MAX_BYTES raise UnreadableMessage saying what it is;
    nothing blocks, no link is followed, and nothing larger than the limit is loaded.
    FileNotFoundError means the file is gone (another consumer took it).
    """
    try:
        return read_bounded(path, MAX_BYTES, "message", follow=False)
    except NotARegularFile as exc:
        raise UnreadableMessage(f"not a regular file: {exc.kind}") from None
    except FileTooLarge as exc:
        size = f"{exc.size} bytes" if exc.size is not None else f"over {MAX_BYTES} bytes"
        raise UnreadableMessage(f"too large: {size}, limit {MAX_BYTES}") from None
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise UnreadableMessage(f"cannot be read: {exc.strerror}") from None


def looks_like_envelope(d: Any) -> bool:
    """Whether a decoded JSON value has the shape of a message (for stdin framing, SPEC 6)."""
    return isinstance(d, dict) and all(k in d for k in ("v", "id", "from", "ts", "body"))


def decode_envelope(text: str) -> dict[str, Any] | None:
    """The decoded JSON object of `text` when it has the shape of a message, else None.

    For text that may or may not be an envelope (stdin, a line of a pipe's input):
    what is not JSON, or is nested too deeply for the decoder (a RecursionError, not a
    ValueError), is plain text and never an error.
    """
    try:
        decoded = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return decoded if looks_like_envelope(decoded) else None
