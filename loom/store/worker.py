"""The serve loop shared by agent runners and pipe processes.

A Worker owns the queue (its lock, held from start to exit), the process-level files
(pid, status, started_at, stopped_at), the signals, and the wait for new messages; a
Handler owns what happens to one message.
The supervisor can therefore manage agents and pipes with one code path (SPEC 1).

With `concurrency` N > 1 up to N claimed messages are handled at once, each on a thread
of its own (SPEC 4: N claims in flight); claiming, status, timed work and signals stay on
the main thread. A stop claims nothing more; the claims in flight are put back (agents:
their calls are abandoned and write nothing) or finish (pipes: `finish_on_stop`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import queue as queue_module
import signal
import threading
import time
from collections.abc import Iterator
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
# How long a stop waits for the replies being written by call threads.
SETTLE_WAIT_S = 5.0
# How much of an unexpected error's text goes into the failure reply and records.
_PROBLEM_CHARS = 500
# A section with nothing to guard (it holds no state: one serves every use).
_UNGUARDED = contextlib.nullcontext()


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


class Cancelled(Stopping):
    """Raised inside an interruptible section by SIGINT when the worker cancels on it
    (`cancel_on_sigint`, a chat on a terminal): that section ends, the worker goes on."""


class Handler(Protocol):
    def recover(self) -> list[str]:
        """Called before serving: finish or re-queue what a crash left behind.

        Returns the claimed messages to be handled again (resumed where they were):
        the Worker takes each through `handle`, behind the fault barrier.
        """

    def handle(self, name: str) -> None:
        """Process one message already claimed into `.in-progress/`."""

    def next_deadline(self) -> float | None:
        """Monotonic time at which `on_deadline` has timed work to do, if any."""

    def on_deadline(self) -> None:
        """Do timed work (window timeouts, throttle releases)."""

    def close(self) -> None:
        """Write what is still owed (an agent's token totals) before the queue is given up."""


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
        finish_on_stop: bool = False,
        group_commit: bool = False,
    ) -> None:
        self.proc = proc
        # Acknowledge the messages of a drain in batches (Queue.group): for handlers
        # that settle through `Queue.acknowledge_answered`, and one message at a time only.
        self.group_commit = group_commit
        self.concurrency = max(1, concurrency)
        # On a stop with claims in flight: put back those not finished (an agent's model
        # calls), or let them all finish (a pipe's steps, each bounded by its operator's
        # own timeout).
        self.finish_on_stop = finish_on_stop
        # With a concurrency above 1, claims are handled by up to that many call threads,
        # started as needed and kept: starting a thread per claim cost more CPU than the
        # rest of an instant model call. A None in the queue ends one thread.
        self._calls: queue_module.SimpleQueue[str | None] = queue_module.SimpleQueue()
        self._call_threads = 0
        self._short_of_threads = False  # a call thread could not be started (said once)
        # Inside `serve`'s loop, which runs the handler's timed work (`on_deadline`).
        self.serving = False
        self.queue = queue
        self.handler = handler
        self.log = log
        self.owner = owner
        self._stop = threading.Event()
        # The signal that asked for the stop (SIGINT, SIGTERM), if one did.
        self.signum: int | None = None
        self._interruptible = False
        self._pause_s = PAUSE_FIRST_S
        self._paused: OSError | None = None  # the fault of the current pause, if any
        self._pause_logged = False
        self._paused_at = 0.0
        # Even with inotify, rescan now and then: an event can be missed when the inbox
        # folder itself is replaced, and a file can be put back by another process.
        self._rescan_s = settings.WORKER_RESCAN.get()
        # With concurrency above 1, the claims handled in threads: each one "open"
        # (its handler may still be waiting on the model), "settling" (writing its
        # reply) or "abandoned" (put back on stop; its thread must write nothing).
        self._claims: dict[str, str] = {}
        self._claims_changed = threading.Condition()
        # Both guarded by `_claims_changed`: the main thread is claiming from the inbox,
        # and the status this worker last wrote is `running`.
        self._draining = False
        self._running = False
        self._fault: BaseException | None = None
        self._local = threading.local()
        # A chat on a terminal: Ctrl-C cancels the section in hand (a reply, the line
        # being typed) instead of stopping the worker; outside one it is ignored.
        self.cancel_on_sigint = False

    # -- signals -------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and self.cancel_on_sigint:
            if self._interruptible:
                self._interruptible = False
                raise Cancelled()
            return
        self.signum = self.signum or signum
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
        if self._in_call_thread:
            # No signal reaches this thread: a stop puts its claim back and abandons
            # it instead (`settling` then refuses to write), see `_abandon_open`.
            yield
            return
        self._interruptible = True
        try:
            yield
        finally:
            self._interruptible = False

    def pause(self, seconds: float) -> None:
        """Wait `seconds` (a retry's delay, a rate limit's turn); a stop ends it (Stopping)."""
        if self._in_call_thread:
            if self._stop.wait(seconds):
                raise Stopping()
            return
        with self.interruptible():
            time.sleep(seconds)

    def settling(self, name: str) -> contextlib.AbstractContextManager[None]:
        """The section that writes the outcome of claim `name` (reply, acknowledgement).

        In a call thread, entered only while the claim is still this process's: after a
        stop it has been put back (or is put back here) and Stopping is raised, so a
        message is never both put back and answered. A stop waits for sections entered.
        On the main thread a signal never cuts it short: there is nothing to guard.
        """
        return self._settling_claim(name) if self._in_call_thread else _UNGUARDED

    @contextlib.contextmanager
    def _settling_claim(self, name: str) -> Iterator[None]:
        with self._claims_changed:
            if self._stop.is_set() or self._claims.get(name) != "open":
                self._put_back_locked(name)
                raise Stopping()
            self._claims[name] = "settling"
        try:
            yield
        finally:
            with self._claims_changed:
                self._claims[name] = "settled"
                self._claims_changed.notify_all()

    def put_back(self, name: str) -> None:
        """Return claim `name` to the inbox after a stop, unless it already was."""
        if not self._in_call_thread:
            if self.queue.put_back(name):
                self.log.info("put back", msg=name, detail="stopped before the answer was complete")
            return
        with self._claims_changed:
            self._put_back_locked(name)

    def _put_back_locked(self, name: str) -> None:
        if self._claims.get(name) == "abandoned":
            return  # put back already, and the inbox may be another owner's by now
        self._claims[name] = "abandoned"
        if self.queue.put_back(name):
            self.log.info("put back", msg=name, detail="stopped before the answer was complete")

    @property
    def _in_call_thread(self) -> bool:
        # Call threads exist only with a concurrency above 1 (`_drain_concurrently`).
        return self.concurrency > 1 and getattr(self._local, "claim", None) is not None

    def abandoned(self, name: str) -> bool:
        """Whether claim `name` was put back by a stop (its outcome must not be written)."""
        with self._claims_changed:
            return self._claims.get(name) == "abandoned"

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
            with contextlib.suppress(OSError):  # a full disk: the stop goes on
                self.handler.close()
            current = self.proc.status
            # The supervisor owns restarting/dead (SPEC 8); a CLI stop already wrote stopped;
            # `pending` asks for the next start (`loom up`, a stopping supervisor).
            if current not in ("dead", "restarting", "pending") or status == "error":
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
            self.handle(name)

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
        self.serving = True
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
        finally:
            # From here, what a call thread still settling counts is written at once.
            self.serving = False
            watch.close()
            self._abandon_open()
            self._end_call_threads()

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
            if self._in_call_thread and self.abandoned(name):
                return  # put back on stop: whatever it choked on, it is not ours now
            if is_disk_full(exc) or not os.path.isdir(self.queue.in_progress):
                raise
            problem = f"{type(exc).__name__}: {exc}"[:_PROBLEM_CHARS]
            self._settle(name, problem)

    def _settle(self, name: str, problem: str) -> None:
        """Fail (or, if it cannot be read, quarantine) a message its handler choked on."""
        path = self.queue.claimed_path(name)
        if self.queue.awaiting_ack(name) or not os.path.lexists(path):
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
        """Claim and handle every pending message; True if any was handled.

        With a concurrency above 1, up to that many are handled at once, each in a
        thread of its own; this returns once every pending one is claimed.
        """
        if self.concurrency > 1:
            return self._drain_concurrently()
        worked = False
        try:
            with self.queue.group() if self.group_commit else contextlib.nullcontext():
                for name in self.queue.pending():
                    if self._stop.is_set():
                        break
                    self._run_due()
                    if self.queue.claim(name) is None:
                        continue
                    if not worked:
                        # Written once per burst, not per message: status says what the
                        # process does, and a backlog is one long stretch of work.
                        self.proc.set_status("running")
                        worked = True
                    self.handle(name)
        finally:
            if worked and not self._stop.is_set():
                self.proc.set_status("idle")
        self._run_due()
        return worked

    def _drain_concurrently(self) -> bool:
        worked = False
        try:
            with self._claims_changed:
                self._draining = True
            for name in self.queue.pending():
                if not self._wait_for_slot():
                    break
                self._run_due()
                if self.queue.claim(name) is None:
                    continue
                worked = True
                with self._claims_changed:
                    # Status first: if it cannot be written (a full disk), the claim is
                    # not in flight, and recovery finds it in `.in-progress/`.
                    if not self._running:
                        self.proc.set_status("running")
                        self._running = True
                    self._claims[name] = "open"
                self._start_call(name)
        except BaseException:
            # A fault here (a full disk) sends the loop to recovery, which must find no
            # claim of this process still in flight.
            self._wait_for_slot(all_ended=True)
            with self._claims_changed:
                self._draining = False
            raise
        with self._claims_changed:
            self._draining = False
            if not self._claims:
                self._set_idle()
        self._raise_fault()
        self._run_due()
        return worked

    def _start_call(self, name: str) -> None:
        """Hand claim `name` to a call thread (one more, while fewer than `concurrency`)."""
        if self._call_threads < self.concurrency:
            number = self._call_threads + 1
            thread = threading.Thread(target=self._call_loop, name=f"call {number}", daemon=True)
            try:
                thread.start()
            except RuntimeError as exc:  # "can't start new thread": a process or thread limit
                if self._call_threads == 0:
                    # Nobody to hand it to: the claim stays in `.in-progress/` for
                    # recovery, and the runner ends with why (the supervisor restarts it).
                    with self._claims_changed:
                        self._claims.pop(name, None)
                        self._claims_changed.notify_all()
                    raise RuntimeError(f"cannot start a thread for a model call: {exc}") from None
                if not self._short_of_threads:
                    self._short_of_threads = True
                    self.log.warning(
                        "fewer calls in flight",
                        error=str(exc),
                        detail=f"{self._call_threads} of {self.concurrency} (a thread limit)",
                    )
            else:
                self._call_threads = number
        self._calls.put(name)

    def _call_loop(self) -> None:
        while (name := self._calls.get()) is not None:
            self._handle_in_thread(name)

    def _end_call_threads(self) -> None:
        for _ in range(self._call_threads):
            self._calls.put(None)
        self._call_threads = 0

    def _wait_for_slot(self, all_ended: bool = False) -> bool:
        """Wait until fewer than `concurrency` claims are in flight (`all_ended`: none);
        False on a stop, or on a fault of the process once every claim has ended."""
        with self._claims_changed:
            while not self._stop.is_set():
                if self._fault is not None or all_ended:
                    if not self._claims:
                        return False
                elif len(self._claims) < self.concurrency:
                    return True
                # A short wait: the stop signal sets the flag, it cannot notify.
                self._claims_changed.wait(0.1)
            return False

    def _raise_fault(self) -> None:
        if self._fault is not None and not self._stop.is_set():
            self._wait_for_slot(all_ended=True)
            fault, self._fault = self._fault, None
            raise fault

    def _handle_in_thread(self, name: str) -> None:
        self._local.claim = name
        try:
            self.handle(name)
        except Stopping:
            pass
        except BaseException as exc:
            # A fault of the process (a full disk, a newer message schema): the loop
            # re-raises it once the other claims in flight have ended.
            with self._claims_changed:
                if self._fault is None and self._claims.get(name) != "abandoned":
                    self._fault = exc
        finally:
            with self._claims_changed:
                self._claims.pop(name, None)
                try:
                    if not self._claims and not self._draining:
                        self._set_idle()
                except OSError as exc:
                    # A full disk here too: the loop re-raises it, and the call thread,
                    # kept for the next claim, lives on.
                    if self._fault is None:
                        self._fault = exc
                finally:
                    self._claims_changed.notify_all()

    def _set_idle(self) -> None:
        """With `_claims_changed` held: the last claim in flight has ended and none is
        coming (the inbox has been claimed to its end), so the process waits now.

        Not while the main thread still claims: a backlog is one stretch of work, even
        when the calls in flight all end before the next claim is made."""
        if self._running and not self._stop.is_set():
            self.proc.set_status("idle")
            self._running = False

    def _abandon_open(self) -> None:
        """On the way out: put back every claim whose call has not finished, and wait
        for those writing their reply (a few file operations) to finish; with
        `finish_on_stop`, wait for every claim in flight to finish instead."""
        with self._claims_changed:
            if self.finish_on_stop:
                while self._claims:
                    self._claims_changed.wait(0.05)
                return
            for name, state in list(self._claims.items()):
                if state == "open":
                    self._put_back_locked(name)
            deadline = time.monotonic() + SETTLE_WAIT_S
            # An abandoned thread may still be waiting on its model: it writes nothing.
            while "settling" in self._claims.values() and time.monotonic() < deadline:
                self._claims_changed.wait(0.05)

    def _run_due(self) -> None:
        deadline = self.handler.next_deadline()
        if deadline is not None and deadline <= time.monotonic():
            self.handler.on_deadline()

    def _wait(self, watch: object) -> None:
        timeout = self._rescan_s
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
