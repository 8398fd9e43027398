"""The serve loop shared by agent runners and pipe processes.

A Worker owns the queue (its lock, held from start to exit), the process-level files
(pid, status, started_at, stopped_at), the signals, and the wait for new messages; a
Handler owns what happens to one message.
The supervisor can therefore manage agents and pipes with one code path (SPEC 1).

With `concurrency` N > 1 up to N claimed messages are handled at once, each on a thread
of a pool (SPEC 4: N claims in flight); claiming, status, timed work and signals stay on
the main thread. A stop claims nothing more and lets the messages in flight finish.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from types import FrameType
from typing import Protocol

from loom import settings
from loom.errors import UnreadableMessage, UnsupportedVersion, is_disk_full
from loom.store.home import Ownership, ProcessDir, now_iso
from loom.store.logs import Log
from loom.store.message import Message
from loom.store.queue import Queue, read_message
from loom.store.watch import watcher

# The disk cannot take writes right now (errors.is_disk_full). Waiting is the cure (the
# operator frees space), so the message is kept as it is, never failed, and the worker
# pauses, doubling the pause from the first to the last value, until a write succeeds.
PAUSE_FIRST_S = 0.5
PAUSE_MAX_S = 30.0
# How much of an unexpected error's text goes into the failure reply and records.
_PROBLEM_CHARS = 500
# While messages are in flight on other threads, the wait for new ones wakes this often
# to see which finished (status, slots, a fault of the process to raise). New messages
# still wake it at once.
_IN_FLIGHT_TICK_S = 0.05


def read_claimed(queue: Queue, name: str, log: Log) -> Message | str | None:
    """The claimed message `name`, for a handler to work on; otherwise settle it here.

    Returns the reason when the file was unreadable (it is in `.unreadable/` now), and
    None when there is nothing to do for now: it is gone, or looks half-written and
    was put back to be looked at again shortly (SPEC 4). A message from a newer loom
    is put back and its UnsupportedVersion raised, naming the file (SPEC 2).
    """
    try:
        return queue.read_claimed(name)
    except FileNotFoundError:
        return None
    except UnsupportedVersion as exc:
        queue.put_back(name)
        # Not echoed: the error raised is the one line the foreground user sees.
        log.event("unsupported version", "error", echo=False, msg=name, error=str(exc))
        raise UnsupportedVersion(f"{name}: {exc}") from None
    except (UnreadableMessage, UnicodeDecodeError) as exc:
        if queue.half_written(name):
            log.info("half-written", msg=name, detail="looking again shortly")
            return None
        queue.quarantine(name, str(exc))
        log.error("unreadable", msg=name, error=str(exc))
        return str(exc)


class Stopping(BaseException):
    """Raised inside an interruptible section when SIGTERM/SIGINT arrives."""


class Handler(Protocol):
    def recover(self) -> list[str]:
        """Called before serving: finish or re-queue what a crash left behind.

        Returns the claimed messages to be handled again (resumed where they were):
        the Worker takes each through `handle`, behind the fault barrier.
        """

    def handle(self, name: str) -> None:
        """Process one message already claimed into `.in-progress/`.

        With the Worker's `concurrency` above 1 it is called from several threads at
        once, for different messages, and must not use `Worker.interruptible`.
        """

    def next_deadline(self) -> float | None:
        """Monotonic time at which `on_deadline` has timed work to do, if any."""

    def on_deadline(self) -> None:
        """Do timed work (window timeouts, throttle releases)."""


class Worker:
    """Serves one inbox until stopped by a signal, `stop()`, or (with `once`) an empty inbox."""

    def __init__(
        self,
        proc: ProcessDir,
        queue: Queue,
        handler: Handler,
        log: Log,
        owner: Ownership | None = None,
        concurrency: int = 1,
    ) -> None:
        self.proc = proc
        self.queue = queue
        self.handler = handler
        self.log = log
        self.owner = owner
        self._stop = threading.Event()
        self._interruptible = False
        self._pause_s = PAUSE_FIRST_S
        self._paused: OSError | None = None  # the fault of the current pause, if any
        self._pause_logged = False
        self._paused_at = 0.0
        # Even with inotify, rescan now and then: an event can be missed when the inbox
        # folder itself is replaced, and a file can be put back by another process.
        self._rescan_s = settings.WORKER_RESCAN.get()
        self.concurrency = max(1, concurrency)
        self._pool: ThreadPoolExecutor | None = None
        self._in_flight: dict[Future[None], str] = {}
        self._fault: BaseException | None = None
        self._busy = False  # status says `running`

    # -- signals -------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stop.set()
        if self._interruptible:
            self._interruptible = False
            raise Stopping()

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        """A section (e.g. waiting on a model) that a stop signal may abort at once.

        Outside such sections a signal only asks the loop to stop after the current
        message, so a reply is never written without its acknowledgement.
        """
        if self._stop.is_set():
            raise Stopping()
        self._interruptible = True
        try:
            yield
        finally:
            self._interruptible = False

    def install_signals(self) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)

    # -- ownership and lifecycle files ---------------------------------------------
    def own(self) -> None:
        """Take the queue's lock unless already held; AlreadyServed when another owns it.

        Taken before anything is written, so a refused second process changes nothing.
        """
        if self.owner is None or not self.owner.held:
            self.owner = self.proc.own()

    def mark_started(self) -> None:
        self.own()
        self.proc.write("pid", str(os.getpid()))
        self.proc.write("started_at", now_iso())
        self.proc.set_status("idle")

    def mark_stopped(self, status: str = "stopped") -> None:
        """Write the final status on the way out, so `ps` never believes a dead pid,
        then give the queue up (after the files, so a next owner's are not overwritten)."""
        try:
            current = self.proc.status
            # The supervisor owns restarting/dead (SPEC 8); a CLI stop already wrote stopped.
            if current not in ("dead", "restarting") or status == "error":
                self.proc.set_status(status)
            self.proc.write("pid", "")
            self.proc.write("stopped_at", now_iso())
        finally:
            if self.owner is not None:
                self.owner.release()

    def recover(self) -> None:
        """Finish or re-queue what a crash left behind, as the queue's owner.

        Only the owner may: anything in `.in-progress/` is then an earlier owner's,
        and that owner is gone.
        """
        self.own()
        for name in self.handler.recover():
            if self._stop.is_set():
                break
            self._reap(until=self.concurrency - 1)
            if self._stop.is_set():
                break
            self._dispatch(name)

    # -- the loop ------------------------------------------------------------------
    def serve(self) -> None:
        """Recover, then process every message that arrives until stopped.

        A full or read-only disk pauses the loop instead of stopping it: what was in
        hand stays in `.in-progress/`, and recovery runs again once writes succeed,
        exactly as after a crash at that instant.
        """
        self.own()
        self.queue.ensure()
        watch = watcher([self.queue.inbox])
        if self.concurrency > 1:
            self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="handle")
        try:
            recovered = False
            while not self._stop.is_set():
                try:
                    if not recovered:
                        self.recover()
                        recovered = True
                        if self._paused is None:
                            self.log.info("serving", pid=os.getpid())
                    worked = self.drain()
                except OSError as exc:
                    if not is_disk_full(exc):
                        raise
                    self._pause(exc)
                    recovered = False
                    continue
                self._resume()
                if self._stop.is_set():
                    break
                if not worked:
                    self._wait(watch)
            # Stopped: what is in flight finishes (a process fault of one still counts).
            self._reap(until=0)
        finally:
            if self._pool is not None:
                # Reached with messages in flight only after an error of the process:
                # they finish (or fail) before it exits.
                self._pool.shutdown(wait=True)
                self._pool = None
                self._in_flight.clear()
            watch.close()

    def handle(self, name: str) -> None:
        """Handle one claimed message behind the fault barrier.

        Whatever goes wrong with the message ends with it in exactly one of
        `.processed/`, `.failed/` (failure reply first) or `.unreadable/` (SPEC 4), and
        returns. Only faults of the process itself propagate: a stop, a newer message
        schema, a full or read-only disk (the message is left in `.in-progress/`), and
        its queue folders gone.
        """
        try:
            self.handler.handle(name)
        except UnsupportedVersion:
            raise
        except Exception as exc:
            if is_disk_full(exc) or not os.path.isdir(self.queue.in_progress):
                raise
            problem = f"{type(exc).__name__}: {exc}"[:_PROBLEM_CHARS]
            self._settle(name, problem)

    def _settle(self, name: str, problem: str) -> None:
        """Fail (or, if it cannot be read, quarantine) a message its handler choked on."""
        path = self.queue.claimed_path(name)
        if not os.path.lexists(path):
            # Already acknowledged or failed: the fault came after, e.g. while logging.
            self.log.error("error after the message was settled", msg=name, error=problem)
            return
        try:
            msg = read_message(path)
        except UnreadableMessage as exc:
            self.queue.quarantine(name, str(exc))
            self.log.error("unreadable", msg=name, error=str(exc))
            return
        text = f"{self.proc.name} could not process {name}: {problem}"
        try:
            reply = msg.reply(self.proc.name, text, parent_filename=name, error=True)
            self.queue.fail(name, reply, error_type="internal", last_error=problem, attempts=1)
        except Exception as exc:
            if is_disk_full(exc) or not os.path.lexists(path):
                raise
            # Not even a failure reply can be written for it: keep it aside, with why.
            self.queue.quarantine(name, f"{problem}; then, failing it: {type(exc).__name__}")
            self.log.error("unreadable", msg=name, error=problem)
            return
        self.log.error("failed", msg=name, error_type="internal", error=problem)

    def _pause(self, exc: OSError) -> None:
        """Wait out a full or read-only disk; say so once per pause (best effort)."""
        if self._paused is None:
            self._paused, self._pause_logged = exc, False
            self._paused_at = time.monotonic()
            self._pause_s = PAUSE_FIRST_S
        if not self._pause_logged:
            with contextlib.suppress(OSError):  # the log may be on the same full disk
                self.log.error(
                    "paused: cannot write",
                    error=f"{exc.strerror} ({errno.errorcode.get(exc.errno or 0, exc.errno)})",
                    detail="messages are kept; resuming by itself when writes succeed",
                )
                self._pause_logged = True
        self._stop.wait(self._pause_s)
        self._pause_s = min(self._pause_s * 2, PAUSE_MAX_S)

    def _resume(self) -> None:
        if self._paused is None:
            return
        exc, self._paused = self._paused, None
        self.log.info(
            "resumed",
            paused_s=round(time.monotonic() - self._paused_at, 1),
            detail=f"writes succeed again after: {exc.strerror}",
        )

    def drain(self) -> bool:
        """Claim and handle every pending message; True if any was handled."""
        worked = False
        try:
            for name in self.queue.pending():
                if self._stop.is_set():
                    break
                self._run_due()
                self._reap(until=self.concurrency - 1)  # a free slot
                if self._stop.is_set():  # it may have come while waiting for one
                    break
                if self.queue.claim(name) is None:
                    continue
                if not self._busy:
                    # Written once per burst, not per message: status says what the
                    # process does, and a backlog is one long stretch of work.
                    self.proc.set_status("running")
                    self._busy = True
                worked = True
                self._dispatch(name)
            self._reap()
        finally:
            if self._busy and not self._in_flight and not self._stop.is_set():
                self.proc.set_status("idle")
                self._busy = False
        self._run_due()
        return worked

    # -- messages in flight (concurrency > 1) ----------------------------------------
    def _dispatch(self, name: str) -> None:
        """Handle a claimed message: here and now, or on a thread of the pool."""
        if self._pool is None:
            self.handle(name)
            return
        self._in_flight[self._pool.submit(self.handle, name)] = name

    def _reap(self, until: int | None = None) -> None:
        """Settle the messages that finished; with `until`, first wait until at most that
        many are in flight. A fault of the process (what `handle` lets through: a full
        disk, a newer schema, the queue gone) is raised here once nothing is in flight,
        so whatever handles it (a pause, then recovery) finds no message still in hand.
        """
        if not self._in_flight:
            return
        if until is not None:
            while len(self._in_flight) > until:
                wait(self._in_flight, return_when=FIRST_COMPLETED)
                self._settle_done()
        else:
            self._settle_done()
        fault = self._fault
        if fault is not None:
            self._fault = None
            while self._in_flight:
                wait(self._in_flight)
                self._settle_done()
            raise fault

    def _settle_done(self) -> None:
        for future in [f for f in self._in_flight if f.done()]:
            name = self._in_flight.pop(future)
            exc = future.exception()
            if exc is not None and self._fault is None:
                self._fault = exc
            elif exc is not None:  # raised after the first; the message stays in hand
                self.log.error("stopped", msg=name, error=f"{type(exc).__name__}: {exc}")

    def _run_due(self) -> None:
        deadline = self.handler.next_deadline()
        if deadline is not None and deadline <= time.monotonic():
            self.handler.on_deadline()

    def _wait(self, watch: object) -> None:
        timeout = _IN_FLIGHT_TICK_S if self._in_flight else self._rescan_s
        for deadline in (self.handler.next_deadline(), self.queue.next_retry()):
            if deadline is not None:
                timeout = max(0.0, min(timeout, deadline - time.monotonic()))
        # Interruptible: a stop signal ends the wait at once, rather than at the next
        # rescan (LOOM_WORKER_RESCAN), so `loom agent stop` returns without delay.
        try:
            with self.interruptible():
                watch.wait(timeout)  # type: ignore[attr-defined]
        except (InterruptedError, Stopping):
            pass  # the loop sees the stop flag
