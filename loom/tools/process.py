"""Running a plugin with bounds: a deadline, a cap on its output, and no stray processes.

A plugin is an untrusted program (SPEC 12): it may hang, print without end or leave
children behind. It runs in its own session so that a kill reaches its whole process
group, and its output is read as it comes so progress lines can be logged live.
"""

from __future__ import annotations

import contextlib
import os
import select
import selectors
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

# Keep the end of stderr, where the reason for a failure usually is.
STDERR_TAIL = 2048
_READ_SIZE = 65536


@dataclass(frozen=True)
class Finished:
    """How a bounded run ended. `returncode` is negative for a signal (as subprocess has it)
    and None when the run was stopped for its time or its output."""

    returncode: int | None
    stdout: bytes  # at most the limit
    stderr_tail: str
    seconds: float
    timed_out: bool = False
    overflow: bool = False  # stdout or stderr passed the limit


def run_bounded(
    argv: list[str],
    *,
    data: bytes,
    env: Mapping[str, str],
    timeout: float,
    limit: int,
    cwd: Path | None = None,
    on_line: Callable[[str], None] | None = None,
) -> Finished:
    """Run `argv` with `data` on stdin until it exits, `timeout` seconds pass, or it writes
    more than `limit` bytes to stdout or stderr; then kill its process group.

    `on_line` sees each complete stdout line as it arrives. OSError from starting the
    program (not executable, no interpreter) is the caller's to report.
    """
    started = time.monotonic()
    deadline = started + timeout
    process = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env),
        cwd=cwd,
        start_new_session=True,
        close_fds=True,
    )
    reader = _Reader(limit, on_line)
    stopped = True
    try:
        timed_out = not reader.pump(process, data, deadline)
        if not timed_out and not reader.overflow:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
                stopped = False
            except subprocess.TimeoutExpired:
                timed_out = True  # it closed its output but kept running
        return Finished(
            returncode=None if stopped else process.returncode,
            stdout=bytes(reader.stdout),
            stderr_tail=reader.stderr_tail(),
            seconds=time.monotonic() - started,
            timed_out=timed_out,
            overflow=reader.overflow,
        )
    finally:
        if stopped:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


class _Reader:
    """Feeds stdin and drains stdout and stderr of one process without blocking on any."""

    def __init__(self, limit: int, on_line: Callable[[str], None] | None) -> None:
        self.limit = limit
        self.on_line = on_line
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.stderr_total = 0
        self.overflow = False
        self._line_start = 0

    def pump(self, process: subprocess.Popen[bytes], data: bytes, deadline: float) -> bool:
        """Move bytes until both outputs close (True) or the deadline passes (False)."""
        assert process.stdin and process.stdout and process.stderr
        pending = memoryview(data)
        with selectors.DefaultSelector() as selector:
            if pending:
                selector.register(process.stdin, selectors.EVENT_WRITE)
            else:
                process.stdin.close()
            selector.register(process.stdout, selectors.EVENT_READ)
            selector.register(process.stderr, selectors.EVENT_READ)
            open_outputs = 2
            while open_outputs:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                for key, _ in selector.select(remaining):
                    if key.fileobj is process.stdin:
                        try:
                            # PIPE_BUF bytes fit without blocking once select says writable.
                            pending = pending[os.write(key.fd, pending[: select.PIPE_BUF]) :]
                        except BrokenPipeError:
                            pending = pending[:0]  # it stopped reading: its choice
                        if not pending:
                            selector.unregister(process.stdin)
                            process.stdin.close()
                        continue
                    chunk = os.read(key.fd, _READ_SIZE)
                    if not chunk:
                        selector.unregister(key.fileobj)
                        open_outputs -= 1
                    elif key.fileobj is process.stdout:
                        self._out(chunk)
                    else:
                        self._err(chunk)
                    if self.overflow:
                        return True
        return True

    def _out(self, chunk: bytes) -> None:
        room = self.limit - len(self.stdout)
        self.stdout += chunk[: max(room, 0)]
        if len(chunk) > room:
            self.overflow = True
            return
        if self.on_line is None:
            return
        while (end := self.stdout.find(b"\n", self._line_start)) >= 0:
            line = self.stdout[self._line_start : end].decode("utf-8", errors="replace")
            self._line_start = end + 1
            self.on_line(line)

    def _err(self, chunk: bytes) -> None:
        self.stderr_total += len(chunk)
        self.stderr = (self.stderr + chunk)[-STDERR_TAIL:]
        if self.stderr_total > self.limit:
            self.overflow = True

    def stderr_tail(self) -> str:
        lines = self.stderr.decode("utf-8", errors="replace").strip().splitlines()
        return lines[-1].strip() if lines else ""
