"""One long-lived child process spoken to one line at a time (`command` with `stream: true`).

Each question is one line on the child's stdin; the answer is the next line on its
stdout. Reads and writes go through `select` with a deadline, so a child that hangs or
fills its pipes cannot hang the pipe. The child runs in its own session so a timeout
kills everything it started.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable

_CHUNK = 65536


class ChildDied(Exception):
    """The child exited or closed its stdout before answering."""


class ChildTimedOut(Exception):
    """The child did not answer within the timeout."""


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child's whole session (it was started with start_new_session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()


class LineProcess:
    """A child process answering one stdout line per stdin line."""

    def __init__(
        self, argv: list[str], env: dict[str, str], on_stderr: Callable[[str], None]
    ) -> None:
        self.argv = argv
        self.env = env
        self.on_stderr = on_stderr
        self._proc: subprocess.Popen[bytes] | None = None
        self._buffer = b""
        self._stderr_thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        self._proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
            start_new_session=True,
        )
        assert self._proc.stdin and self._proc.stdout
        os.set_blocking(self._proc.stdin.fileno(), False)
        os.set_blocking(self._proc.stdout.fileno(), False)
        self._buffer = b""
        self._stderr_thread = threading.Thread(
            target=self._pump_stderr, args=(self._proc,), daemon=True
        )
        self._stderr_thread.start()

    def _pump_stderr(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if text:
                self.on_stderr(text)

    def ask(self, line: bytes, timeout: float) -> bytes:
        """Send `line`, return the answer line (without its newline)."""
        if not self.running:
            self.stop()
            self.start()
        proc = self._proc
        assert proc is not None and proc.stdin and proc.stdout
        stdin, stdout = proc.stdin.fileno(), proc.stdout.fileno()
        pending = memoryview(line + b"\n")
        deadline = time.monotonic() + timeout
        writable = True  # a line usually fits in the pipe: write before the first select
        while True:
            if writable and pending:
                try:
                    pending = pending[os.write(stdin, pending[:_CHUNK]) :]
                except BlockingIOError:
                    pass
                except BrokenPipeError:
                    raise ChildDied(self._exit_text()) from None
            newline = self._buffer.find(b"\n")
            if newline >= 0 and not pending:
                answer, self._buffer = self._buffer[:newline], self._buffer[newline + 1 :]
                return answer
            left = deadline - time.monotonic()
            if left <= 0:
                raise ChildTimedOut()
            readable, ready, _ = select.select([stdout], [stdin] if pending else [], [], left)
            writable = bool(ready)
            if readable:
                try:
                    chunk = os.read(stdout, _CHUNK)
                except BlockingIOError:
                    continue
                if not chunk:
                    raise ChildDied(self._exit_text())
                self._buffer += chunk

    def _exit_text(self) -> str:
        proc = self._proc
        if proc is None:
            return "not running"
        try:
            code = proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            return "closed its output"
        if code < 0:
            return f"killed by signal {-code}"
        return f"exited with status {code}"

    def stop(self) -> None:
        """Close stdin, give the child a moment to exit, then kill its session."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        try:
            proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            proc.wait()
        kill_group(proc)  # stragglers the child left in its session
        if self._stderr_thread is not None:
            self._stderr_thread.join(timeout=1)
            self._stderr_thread = None
        if proc.stderr is not None:
            with contextlib.suppress(OSError):
                proc.stderr.close()
