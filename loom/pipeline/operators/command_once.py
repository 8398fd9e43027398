"""One child process per message (`command` without `stream`): start, exchange, wait.

Two costs dominate a short command such as `cat`, and both are avoided here:

- `/bin/sh -c CMD` starts a shell before the program. A command line that is a plain
  program with plain arguments (no quoting beyond '...' and "...", no variables,
  redirections, globs or other shell syntax, and not a shell builtin) runs directly,
  with the environment the shell would have given it; anything else, or a program
  that cannot be started directly, still goes through the shell.
- `Popen.communicate(timeout=...)` polls for the exit with sleeps that double from
  0.5 ms; here the exit is awaited on a pidfd (Linux) within the same deadline.
"""

from __future__ import annotations

import math
import os
import re
import select
import shlex
import subprocess
import time
from dataclasses import dataclass

from loom.pipeline.operators.command_stream import kill_group

_CHUNK = 65536
# Characters with no meaning to the shell (besides the blanks and quotes shlex
# handles like the shell does); a command line made of anything else uses the shell.
_PLAIN = re.compile(r"[A-Za-z0-9_\-./:,+%@= \t'\"]+")
# Reserved words and builtins of POSIX shells (and bash's): a program of that name on
# the PATH would behave differently from the shell's own.
_SHELL_WORDS = frozenset(
    """
    ! { } [[ ]] case do done elif else esac fi for function if in select then time until
    while . : [ alias bg bind break builtin caller cd chdir command compgen complete
    continue declare dirs disown echo enable eval exec exit export false fc fg getopts
    hash help history jobs kill let local logout mapfile popd printf pushd pwd read
    readarray readonly return set shift shopt source suspend test times trap true type
    typeset ulimit umask unalias unset wait
    """.split()
)


def plain_argv(cmd: str) -> list[str] | None:
    """The argument list of a shell command line with no shell syntax, else None."""
    if not _PLAIN.fullmatch(cmd):
        return None
    try:
        words = shlex.split(cmd)
    except ValueError:  # an unbalanced quote: the shell reports it
        return None
    if not words or words[0] in _SHELL_WORDS or "=" in words[0]:
        return None  # `NAME=value cmd` assigns a variable
    return words


def shell_environment(env: dict[str, str]) -> dict[str, str]:
    """The environment /bin/sh (dash, bash in POSIX mode) hands the programs it runs.

    The shell exports only variables with valid names, sets PWD to the working
    directory (keeping an inherited PWD that names it), and resets IFS, OPTIND and
    PPID when they were inherited.
    """
    # An ASCII identifier is exactly a shell name: [A-Za-z_][A-Za-z0-9_]*.
    exported = {k: v for k, v in env.items() if k.isascii() and k.isidentifier()}
    exported["PWD"] = _working_directory(env.get("PWD"))
    if "IFS" in exported:
        exported["IFS"] = " \t\n"
    if "OPTIND" in exported:
        exported["OPTIND"] = "1"
    if "PPID" in exported:
        exported["PPID"] = str(os.getpid())
    return exported


def _working_directory(inherited: str | None) -> str:
    if inherited and inherited.startswith("/"):
        try:
            if os.path.samefile(inherited, "."):
                return inherited
        except OSError:
            pass
    return os.getcwd()


def start(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start `argv` with pipes on stdin, stdout and stderr, in a session of its own."""
    return subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,  # a timeout kills everything it started (kill_group)
    )


@dataclass
class Finished:
    """What a child did: its exit code (None when it was killed at the timeout), output."""

    code: int | None
    out: bytes
    err: bytes


def exchange(proc: subprocess.Popen[bytes], data: bytes, timeout: float) -> Finished:
    """Write `data` to the child's stdin, read its stdout and stderr to their end and wait
    for its exit, all within `timeout` seconds. At the timeout its session is killed and
    what it wrote until then is still collected."""
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    deadline = time.monotonic() + timeout
    stdin = proc.stdin.fileno()
    outputs: dict[int, list[bytes]] = {proc.stdout.fileno(): [], proc.stderr.fileno(): []}
    poller = select.poll()
    os.set_blocking(stdin, False)
    poller.register(stdin, select.POLLOUT)
    for fd in outputs:
        poller.register(fd, select.POLLIN)
    pending = memoryview(data)
    streams = 3
    timed_out = False

    def stop_writing() -> None:
        nonlocal streams
        poller.unregister(stdin)
        proc.stdin.close()  # type: ignore[union-attr]  # checked above
        streams -= 1

    while streams:
        if timed_out:
            events = poller.poll()
        else:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                kill_group(proc)
                if not proc.stdin.closed:
                    stop_writing()
                continue
            events = poller.poll(math.ceil(left * 1000))
        for fd, _ in events:
            if fd == stdin:
                try:
                    pending = pending[os.write(fd, pending[:_CHUNK]) :]
                except BlockingIOError:
                    continue
                except BrokenPipeError:
                    pending = pending[:0]  # it stopped reading: the rest is not wanted
                if not pending:
                    stop_writing()
                continue
            chunk = os.read(fd, _CHUNK)
            if chunk:
                outputs[fd].append(chunk)
            else:
                poller.unregister(fd)
                streams -= 1
    proc.stdout.close()
    proc.stderr.close()
    if not timed_out and not _exited(proc, deadline):
        timed_out = True
        kill_group(proc)
    code = proc.wait()
    out, err = (b"".join(chunks) for chunks in outputs.values())
    return Finished(None if timed_out else code, out, err)


def _exited(proc: subprocess.Popen[bytes], deadline: float) -> bool:
    """Wait for the exit until `deadline`; False when it did not come."""
    if proc.poll() is not None:
        return True
    left = max(0.0, deadline - time.monotonic())
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # not Linux, or an old kernel: Popen's own wait
        try:
            proc.wait(timeout=left)
        except subprocess.TimeoutExpired:
            return False
        return True
    try:
        return bool(select.select([pidfd], [], [], left)[0])
    finally:
        os.close(pidfd)
