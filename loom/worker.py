"""The serve loop shared by agent runners and pipe processes.

A Worker owns the process-level files (pid, status, started_at, stopped_at), the
signals, and the wait for new messages; a Handler owns what happens to one message.
The supervisor can therefore manage agents and pipes with one code path (SPEC 1).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import Protocol

from loom import settings
from loom.errors import UnsupportedVersion
from loom.home import ProcessDir, now_iso
from loom.logs import Log
from loom.queue import Queue
from loom.watch import watcher


class Stopping(BaseException):
    """Raised inside an interruptible section when SIGTERM/SIGINT arrives."""


class Handler(Protocol):
    def recover(self) -> None:
        """Called once before serving: finish or re-queue what a crash left behind."""

    def handle(self, name: str) -> None:
        """Process one message already claimed into `.in-progress/`."""

    def next_deadline(self) -> float | None:
        """Monotonic time at which `on_deadline` has timed work to do, if any."""

    def on_deadline(self) -> None:
        """Do timed work (window timeouts, throttle releases)."""


class Worker:
    """Serves one inbox until stopped by a signal, `stop()`, or (with `once`) an empty inbox."""

    def __init__(self, proc: ProcessDir, queue: Queue, handler: Handler, log: Log) -> None:
        self.proc = proc
        self.queue = queue
        self.handler = handler
        self.log = log
        self._stop = threading.Event()
        self._interruptible = False
        # Even with inotify, rescan now and then: an event can be missed when the inbox
        # folder itself is replaced, and a file can be put back by another process.
        self._rescan_s = settings.WORKER_RESCAN.get()

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

    # -- lifecycle files -----------------------------------------------------------
    def mark_started(self) -> None:
        self.proc.write("pid", str(os.getpid()))
        self.proc.write("started_at", now_iso())
        self.proc.set_status("idle")

    def mark_stopped(self, status: str = "stopped") -> None:
        """Write the final status on the way out, so `ps` never believes a dead pid."""
        current = self.proc.status
        # The supervisor owns restarting/dead (SPEC 8); a CLI stop already wrote stopped.
        if current not in ("dead", "restarting") or status == "error":
            self.proc.set_status(status)
        self.proc.write("pid", "")
        self.proc.write("stopped_at", now_iso())

    # -- the loop ------------------------------------------------------------------
    def serve(self) -> None:
        """Recover, then process every message that arrives until stopped."""
        self.queue.ensure()
        watch = watcher([self.queue.inbox])
        try:
            self.handler.recover()
            self.log.info("serving", pid=os.getpid())
            while not self._stop.is_set():
                worked = self.drain()
                if self._stop.is_set():
                    break
                if not worked:
                    self._wait(watch)
        except UnsupportedVersion:
            raise
        finally:
            watch.close()

    def drain(self) -> bool:
        """Claim and handle every pending message; True if any was handled."""
        worked = False
        try:
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
                self.handler.handle(name)
        finally:
            if worked and not self._stop.is_set():
                self.proc.set_status("idle")
        self._run_due()
        return worked

    def _run_due(self) -> None:
        deadline = self.handler.next_deadline()
        if deadline is not None and deadline <= time.monotonic():
            self.handler.on_deadline()

    def _wait(self, watch: object) -> None:
        timeout = self._rescan_s
        for deadline in (self.handler.next_deadline(), self.queue.next_retry()):
            if deadline is not None:
                timeout = max(0.0, min(timeout, deadline - time.monotonic()))
        try:
            watch.wait(timeout)  # type: ignore[attr-defined]
        except InterruptedError:
            pass
