"""The Maildir-like queue every agent and pipe inbox follows (SPEC 4).

send -> claim (rename into `.in-progress/`, the rename is the lock) -> produce into
the outbox -> acknowledge (rename into `.processed/`), or fail (failure reply first,
then `.failed/` plus `NAME.msg.error.json`). `recover` finishes or re-queues what a
crash left in `.in-progress/`.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from loom.errors import UnreadableMessage, UsageError
from loom.store import atomic
from loom.store.files import size_text
from loom.store.home import now_iso
from loom.store.message import FILENAME_RE, MAX_BYTES, Message, parse, read_file

IN_PROGRESS = ".in-progress"
PROCESSED = ".processed"
FAILED = ".failed"
UNREADABLE = ".unreadable"
# A file that does not parse and was modified this recently may still be being
# written by a tool that does not use temp-file-and-rename; it gets another look.
HALF_WRITTEN_GRACE_S = 2.0
HALF_WRITTEN_RECHECK_S = 0.1
# Replies are written after the claim; allow this much clock skew when looking
# for them during recovery.
RECOVERY_SKEW_MS = 60_000
# Group commit: a batch of answered messages is acknowledged together once it holds
# this many, or once its first answer is this old, or when the inbox has no more.
GROUP_MAX = 64
GROUP_MAX_S = 0.5


def is_message_name(name: str) -> bool:
    return name.endswith(".msg") and not name.startswith(".")


class MessageTooLarge(UsageError):
    """A message whose file would be larger than any reader of it takes (MAX_BYTES)."""


def write_message(directory: Path, msg: Message, filename: str | None = None) -> Path:
    """Write `msg` atomically into `directory` as `filename` (default: its canonical name).

    MessageTooLarge, with nothing written, when the encoded file would pass MAX_BYTES:
    a body within the input limit can still grow past it once JSON escapes it (a
    control character becomes six bytes), and a file no reader takes would be lost.
    """
    path = directory / (filename or msg.filename)
    atomic.write_bytes(path, encode(msg))
    return path


def encode(msg: Message) -> bytes:
    """The bytes of `msg`'s file; MessageTooLarge when no reader would take them."""
    data = msg.to_bytes()
    if len(data) > MAX_BYTES:
        raise MessageTooLarge(
            f"the message would be {len(data)} bytes once encoded as JSON, "
            f"over the {size_text(MAX_BYTES)} limit for a message; send a smaller body"
        )
    return data


def holds(inbox: Path, filename: str) -> bool:
    """Whether `filename` is anywhere in the queue of `inbox` already: waiting, being
    answered, done, failed or unreadable (SPEC 4), so a copy of it is a duplicate."""
    return any(
        (inbox / folder / filename).exists()
        for folder in ("", IN_PROGRESS, PROCESSED, FAILED, UNREADABLE)
    )


def deliver_copy(inbox: Path, filename: str, raw: bytes) -> Path:
    """Put `raw`, the bytes of a message file, into `inbox` as `filename` (atomic).

    The router's delivery (SPEC 7): the copy keeps the file's name and bytes, so its
    origin and id stay as the producer wrote them.
    """
    if not is_message_name(filename) or "/" in filename:
        raise ValueError(f"not a message file name: {filename!r}")
    path = inbox / filename
    atomic.write_bytes(path, raw)
    return path


def read_message(path: str | os.PathLike[str]) -> Message:
    """Read and validate one message file (safely: see `loom.store.message.read_file`)."""
    return parse(read_file(path))


def list_messages(directory: Path) -> list[str]:
    """The `.msg` file names in `directory`, oldest first (filename order, SPEC 4)."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if is_message_name(n))


def count_messages(directory: Path) -> int:
    """How many `.msg` files `directory` holds; 0 when it does not exist (yet)."""
    try:
        return sum(1 for n in os.listdir(directory) if is_message_name(n))
    except (FileNotFoundError, NotADirectoryError):
        return 0


class Recovery:
    """What `Queue.recover` did with files left in `.in-progress/`: the names of the
    messages it acknowledged, failed and requeued."""

    __slots__ = ("acknowledged", "failed", "requeued")

    def __init__(self) -> None:
        self.acknowledged: list[str] = []
        self.failed: list[str] = []
        self.requeued: list[str] = []


class Queue:
    """One inbox and its outbox."""

    def __init__(self, inbox: Path, outbox: Path) -> None:
        self.inbox = inbox
        self.outbox = outbox
        self.in_progress = inbox / IN_PROGRESS
        self.processed = inbox / PROCESSED
        self.failed = inbox / FAILED
        self.unreadable = inbox / UNREADABLE
        # Half-written files put back, and when to look at them again (monotonic time).
        self.deferred: dict[str, float] = {}
        # Plain-string forms for the per-message operations (pathlib joins cost more
        # than the renames themselves on tmpfs).
        self._inbox = os.fspath(inbox)
        self._outbox = os.fspath(outbox)
        self._in_progress = os.fspath(self.in_progress)
        self._processed = os.fspath(self.processed)
        # The open group commit (`group`): messages answered but not yet acknowledged,
        # oldest first, and the folders whose fsync they wait for.
        self._answered: list[str] | None = None
        self._answered_since = 0.0
        self._owed = atomic.DirSyncs()

    def ensure(self) -> Queue:
        for d in (self.in_progress, self.processed, self.failed, self.unreadable, self.outbox):
            atomic.make_private_dir(d)
        return self

    # -- send ----------------------------------------------------------------------
    def send(self, msg: Message, filename: str | None = None) -> Path:
        """Deliver `msg` into the inbox (atomic)."""
        return write_message(self.inbox, msg, filename)

    def send_batch(self, messages: list[Message]) -> None:
        """Deliver `messages` into the inbox, each atomically under its canonical name,
        with one disk flush for the batch (`atomic.write_batch`). A message too large,
        or a failed write, sends none of the batch."""
        atomic.write_batch(self.inbox, [(m.filename, encode(m)) for m in messages])

    def pending(self) -> list[str]:
        """Inbox file names waiting to be claimed, oldest first (deferred ones left out)."""
        names = list_messages(self.inbox)
        if self.deferred:
            now = time.monotonic()
            for name, until in list(self.deferred.items()):
                if until <= now:
                    del self.deferred[name]
            names = [n for n in names if n not in self.deferred]
        return names

    def next_retry(self) -> float | None:
        """Monotonic time when a deferred half-written file should be looked at again."""
        return min(self.deferred.values()) if self.deferred else None

    # -- claim ---------------------------------------------------------------------
    def claim(self, name: str) -> str | None:
        """Move `name` into `.in-progress/` and return where it is now; None when another
        consumer got it first."""
        dst = f"{self._in_progress}/{name}"
        try:
            os.rename(f"{self._inbox}/{name}", dst)
        except FileNotFoundError:
            return None
        return dst

    def read_claimed(self, name: str) -> Message:
        return read_message(f"{self._in_progress}/{name}")

    def claimed_path(self, name: str) -> str:
        """Where the claimed message `name` is, as a plain string."""
        return f"{self._in_progress}/{name}"

    def half_written(self, name: str) -> bool:
        """Whether an unparseable claimed file is young enough to be still in writing.

        If so it is put back in the inbox and deferred for a moment, so the consumer
        does not spin on it while its writer finishes.
        """
        path = self.in_progress / name
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return False
        # Only a regular file can be on its way to becoming a message.
        if not stat.S_ISREG(info.st_mode) or time.time() - info.st_mtime >= HALF_WRITTEN_GRACE_S:
            return False
        with contextlib.suppress(FileNotFoundError):
            os.rename(path, self.inbox / name)
        self.deferred[name] = time.monotonic() + HALF_WRITTEN_RECHECK_S
        return True

    # -- produce -------------------------------------------------------------------
    def emit(self, msg: Message, filename: str | None = None) -> Path:
        """Write a reply or result into the outbox (atomic)."""
        return write_message(self.outbox, msg, filename)

    def emit_answer(self, reply: Message) -> None:
        """Write `reply`, the answer to a claimed message, into the outbox; then call
        `acknowledge_answered` for that message.

        Inside `group`, the fsync of the outbox waits for the batch (`commit`), which
        pays it once before it moves the batch's messages to `.processed/`. Either way a
        reply is durable before its message is acknowledged; a crash in between leaves
        the message in `.in-progress/` with its reply, which `recover` acknowledges.
        """
        if self._answered is None:
            self.emit(reply)
            return
        atomic.write_bytes(f"{self._outbox}/{reply.filename}", encode(reply), self._owed)

    def acknowledge_answered(self, name: str) -> None:
        """Acknowledge `name`, whose reply `emit_answer` wrote: at once, or inside
        `group` with its batch (when it is full or old enough, or when the group ends)."""
        if self._answered is None:
            self.acknowledge(name)
            return
        if not self._answered:
            self._answered_since = time.monotonic()
        self._answered.append(name)
        if len(self._answered) >= GROUP_MAX or (
            time.monotonic() - self._answered_since >= GROUP_MAX_S
        ):
            self.commit()

    @contextlib.contextmanager
    def group(self) -> Iterator[None]:
        """A group commit: `acknowledge_answered` acknowledges in batches while it is
        open, and what is answered is acknowledged when it closes (however it closes)."""
        self._answered = []
        try:
            yield
        finally:
            try:
                self.commit()
            finally:
                self._answered = None

    def awaiting_ack(self, name: str) -> bool:
        """Whether `name` is answered and waits for its group's acknowledgement."""
        return self._answered is not None and name in self._answered

    def commit(self) -> None:
        """Acknowledge every message answered in the open group: fsync the replies'
        folders, move the messages to `.processed/`, fsync the two queue folders."""
        if not self._answered:
            return
        self._owed.flush()
        while self._answered:
            name = self._answered[0]
            atomic.rename(f"{self._in_progress}/{name}", f"{self._processed}/{name}", self._owed)
            del self._answered[0]
        self._owed.flush()

    # -- ack / fail / quarantine ---------------------------------------------------
    def acknowledge(self, name: str) -> None:
        """Mark a claimed message done."""
        atomic.rename(f"{self._in_progress}/{name}", f"{self._processed}/{name}")

    def fail(
        self,
        name: str,
        reply: Message | None,
        *,
        error_type: str,
        last_error: str,
        attempts: int,
    ) -> None:
        """Write the failure reply (first), then move the message to `.failed/` with its record."""
        if reply is not None:
            self.emit(reply)
        self._record_failure(name, error_type=error_type, last_error=last_error, attempts=attempts)
        atomic.rename(self.in_progress / name, self.failed / name)

    def _record_failure(
        self, name: str, *, error_type: str, last_error: str, attempts: int
    ) -> None:
        record = {"ts": now_iso(), "attempts": attempts, "last_error": last_error}
        record["error_type"] = error_type
        atomic.write_text(
            self.failed / f"{name}.error.json", json.dumps(record, ensure_ascii=False)
        )

    def quarantine(self, name: str, reason: str, *, claimed: bool = True) -> Path:
        """Move an unreadable file to `.unreadable/` (never deleted) with a note of why."""
        src = (self.in_progress if claimed else self.inbox) / name
        dst = self.unreadable / name
        atomic.rename(src, dst)
        note = {"ts": now_iso(), "reason": reason}
        atomic.write_text(
            self.unreadable / f"{name}.error.json", json.dumps(note, ensure_ascii=False)
        )
        return dst

    def put_back(self, name: str) -> bool:
        """Return a claimed message to the inbox unprocessed (e.g. on a graceful stop);
        False when it was not claimed (any more)."""
        try:
            atomic.rename(self.in_progress / name, self.inbox / name)
        except FileNotFoundError:
            return False
        return True

    # -- recover -------------------------------------------------------------------
    def recover(self) -> Recovery:
        """Finish or re-queue every message a crash left in `.in-progress/` (SPEC 4 step 6).

        A message whose reply already reached the outbox is acknowledged (or failed, if
        that reply is a failure reply), so it is never answered twice; any other goes
        back to the inbox to be processed again. Only the queue's owner may call it
        (ProcessDir.own): every claim is then an earlier, dead owner's.
        """
        report = Recovery()
        stranded = list_messages(self.in_progress)
        if not stranded:
            return report
        replies = self._replies_by_parent(stranded)
        for name in stranded:
            reply = replies.get(name)
            if reply is None:
                self.put_back(name)
                report.requeued.append(name)
            elif reply.error:
                if not (self.failed / f"{name}.error.json").exists():
                    self._record_failure(
                        name, error_type="recovered", last_error=reply.body[:2000], attempts=1
                    )
                atomic.rename(self.in_progress / name, self.failed / name)
                report.failed.append(name)
            else:
                self.acknowledge(name)
                report.acknowledged.append(name)
        return report

    def _replies_by_parent(self, stranded: list[str]) -> dict[str, Message]:
        wanted = set(stranded)
        # A reply is written after its claim, and a rename sets ctime: outbox files
        # older than the oldest claim cannot be replies to these messages.
        oldest_claim_ms = min(int((self.in_progress / n).stat().st_ctime * 1000) for n in stranded)
        return self.replies_to(wanted, oldest_claim_ms - RECOVERY_SKEW_MS)

    def replies_to(
        self, wanted: set[str], floor_ms: int, seen: set[str] | None = None
    ) -> dict[str, Message]:
        """The first reply in the outbox to each message named in `wanted` (by its origin),
        among the files made at or after `floor_ms`; unreadable files are passed over.

        Names in `seen` are not read again and every name looked at joins it, so a
        caller that polls the outbox reads each file once.
        """
        found: dict[str, Message] = {}
        for out in list_messages(self.outbox):
            if seen is not None:
                if out in seen:
                    continue
                seen.add(out)
            m = FILENAME_RE.fullmatch(out)
            if m and int(m.group(1)) < floor_ms:
                continue
            try:
                msg = read_message(self.outbox / out)
            except (UnreadableMessage, OSError):
                continue
            parent = (msg.origin or "").rsplit("/", 1)[-1]
            if parent in wanted:
                found.setdefault(parent, msg)
        return found
