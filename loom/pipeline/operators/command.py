"""`command: CMD` — run an external program on each message (SPEC 6).

The body goes to the program's stdin (with a final newline added when missing). Exit
status 0 forwards one message per non-empty stdout line (no output: nothing); any other
status drops the message; stderr is logged. A crash (killed by a signal, which a shell
reports as status 128+N) or a timeout (default 30s) forwards the message unchanged and
logs why. Output that is not UTF-8 is decoded with replacement characters and logged.
The operators shipped in loom's catalog (`operators/`) are on the PATH, after the user's.

With `stream: true` one long-lived process answers every message: each message is
written as ONE line (a JSON body compacted, a text body as is, or as a JSON string when
it spans several lines) and exactly one answer line is read back; an empty answer line
drops the message. A process that dies or hangs is restarted for the next message. It
answers one message at a time even in a pipe with `concurrency:` (one process, one
conversation); without `stream`, each message in flight has a process of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading

from loom.pipeline.catalog import catalog_dir
from loom.pipeline.errors import ArgError
from loom.pipeline.expressions import compact_json
from loom.pipeline.operators.base import Args, Operator
from loom.pipeline.operators.command_once import exchange, plain_argv, shell_environment, start
from loom.pipeline.operators.command_stream import ChildDied, ChildTimedOut, LineProcess
from loom.pipeline.operators.registry import register
from loom.store.atomic import utf8
from loom.store.message import Message

DEFAULT_TIMEOUT_S = 30.0
# Shells report a child killed by signal N as status 128+N.
_SHELL_SIGNAL_BASE = 128
_MAX_STDERR = 2000


def stream_line(body: str) -> str:
    """The one-line form of a body for a streaming command."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return json.dumps(body, ensure_ascii=False) if ("\n" in body or "\r" in body) else body
    return compact_json(value)


@register
class CommandOperator(Operator):
    kind = "command"
    primary = "cmd"

    def configure(self, args: Args) -> None:
        cmd = args.raw("cmd")
        # A shell command line without shell syntax also has its direct form (command_once).
        self.direct: list[str] | None = None
        if isinstance(cmd, str) and cmd.strip():
            self.argv = ["/bin/sh", "-c", cmd]
            self.shell = True
            self.direct = plain_argv(cmd)
        elif isinstance(cmd, list) and cmd and all(isinstance(a, str) and a for a in cmd):
            self.argv = list(cmd)
            self.shell = False
        else:
            raise ArgError(
                "cmd",
                f"must be a shell command or a list of arguments, got {cmd!r}",
                args.line("cmd"),
            )
        self.timeout = args.duration("timeout") or DEFAULT_TIMEOUT_S
        self.stream = args.flag("stream")
        self._child: LineProcess | None = None
        # One long-lived process answers one line at a time, whatever the concurrency.
        self._asking = threading.Lock()
        self._operators_dir: str | None = None

    def _env(self, msg: Message | None) -> dict[str, str]:
        env = dict(os.environ)
        # The external operators shipped with loom run by name; the user's own PATH
        # comes first, so a local tool of the same name wins.
        if self._operators_dir is None:
            self._operators_dir = str(catalog_dir("operators"))
        path = env.get("PATH", os.defpath)
        env["PATH"] = f"{path}{os.pathsep}{self._operators_dir}" if path else self._operators_dir
        env["LOOM_PIPE"] = self.ctx.pipe
        if msg is not None:
            env["LOOM_MSG_ID"] = msg.id
            env["LOOM_MSG_FROM"] = msg.sender
        return env

    def process(self, msg: Message, key: str, now: float) -> list[Message]:
        if self.stream:
            with self._asking:
                return self._ask(msg)
        return self._run(msg)

    # -- one process per message ---------------------------------------------------
    def _run(self, msg: Message) -> list[Message]:
        data = utf8(msg.body)
        if not data.endswith(b"\n"):
            data += b"\n"
        try:
            proc = self._start(self._env(msg))
        except OSError as exc:
            self.ctx.warn("command failed to start", msg=msg.filename, error=str(exc))
            self.ctx.drop()
            return []
        finished = exchange(proc, data, self.timeout)
        out, err, code = finished.out, finished.err, finished.code
        if code is None:
            self._stderr(msg, err)
            self.ctx.warn(
                "command timed out",
                msg=msg.filename,
                detail=f"no exit after {self.timeout:g}s; forwarding the message unchanged",
            )
            return [msg]
        self._stderr(msg, err)
        signum = -code if code < 0 else None
        if self.shell and _SHELL_SIGNAL_BASE < code <= _SHELL_SIGNAL_BASE + 64:
            signum = code - _SHELL_SIGNAL_BASE
        if signum is not None:
            self.ctx.warn(
                "command crashed",
                msg=msg.filename,
                detail=f"killed by signal {signum}; forwarding the message unchanged",
            )
            return [msg]
        if code != 0:
            self.ctx.warn("command failed", msg=msg.filename, detail=f"exit status {code}; dropped")
            self.ctx.drop()
            return []
        lines = [line.rstrip("\r") for line in self._decode(msg, out).split("\n")]
        return [msg.with_body(line) for line in lines if line]

    def _start(self, env: dict[str, str]) -> subprocess.Popen[bytes]:
        if self.direct is not None:
            try:
                return start(self.direct, shell_environment(env))
            except OSError:
                pass  # not found, not executable, a script without #!: the shell decides
        return start(self.argv, env)

    def _decode(self, msg: Message, data: bytes) -> str:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.ctx.warn(
                "command output is not UTF-8", msg=msg.filename, detail=f"{exc}; replaced"
            )
            return data.decode("utf-8", errors="replace")

    def _stderr(self, msg: Message, err: bytes) -> None:
        text = err.decode("utf-8", errors="replace").strip()
        if text:
            if len(text) > _MAX_STDERR:
                text = text[:_MAX_STDERR] + "..."
            self.ctx.warn("command stderr", msg=msg.filename, detail=text)

    # -- one long-lived process ----------------------------------------------------
    def _ask(self, msg: Message) -> list[Message]:
        if self._child is None:
            self._child = LineProcess(
                self.argv,
                self._env(None),
                lambda text: self.ctx.warn("command stderr", detail=text[:_MAX_STDERR]),
            )
        try:
            answer = self._child.ask(utf8(stream_line(msg.body)), self.timeout)
        except ChildTimedOut:
            self._child.stop()
            self.ctx.warn(
                "command timed out",
                msg=msg.filename,
                detail=f"no answer after {self.timeout:g}s; "
                "restarting it, forwarding the message unchanged",
            )
            return [msg]
        except ChildDied as exc:
            self._child.stop()
            self.ctx.warn(
                "command crashed",
                msg=msg.filename,
                detail=f"{exc}; restarting it, forwarding the message unchanged",
            )
            return [msg]
        except OSError as exc:
            self._child.stop()
            self.ctx.warn("command failed to start", msg=msg.filename, error=str(exc))
            self.ctx.drop()
            return []
        text = self._decode(msg, answer).rstrip("\r")
        if not text:
            self.ctx.drop()
            return []
        return [msg.with_body(text)]

    def close(self) -> None:
        if self._child is not None:
            self._child.stop()
            self._child = None
