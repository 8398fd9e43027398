"""Where things live under `$LOOM_HOME` (SPEC 3), and the small status files."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import stat
import sys
import time
from pathlib import Path

from loom import settings
from loom.errors import LoomError, NotFound
from loom.names import validate_name, validate_process_name
from loom.store import atomic, files

# The most messages one agent or pipe process keeps in flight (`concurrency: N`).
MAX_CONCURRENCY = 256


def concurrency_problem(value: object) -> str | None:
    """Why `value` is not a concurrency (a whole number from 1 to MAX_CONCURRENCY), or None."""
    if isinstance(value, bool) or not isinstance(value, int):
        return f"concurrency must be a whole number from 1 to {MAX_CONCURRENCY}, got {value!r}"
    if not 1 <= value <= MAX_CONCURRENCY:
        return f"concurrency must be from 1 to {MAX_CONCURRENCY}, got {value}"
    return None


STATUSES = ("pending", "running", "idle", "stopped", "restarting", "dead", "error")
KINDS = ("agents", "pipes")
# Names the pid a stop was asked for: written before the signal, read when the exit is reaped.
STOP_FILE = "stop"
# Written by `loom up` in each process folder it starts (SPEC 9): the project's name and
# the loom.yml it came from. A process started by hand has neither.
PROJECT_FILE = "project"
WEAVE_FILE = "weave"
# The original TypeScript loom's runner is `bun .../main.ts`: no "loom" in its command
# line. Its pid is trusted when the status says it runs and it started before its pid
# file was written; this much slack covers the whole-second boot time in /proc/stat.
START_SLACK_S = 1.0
LOCK_FILE = "lock"
# A process that only looks whether a queue is owned holds the lock for a moment
# (see ProcessDir.owner_pid); a starting owner retries this long before giving up.
OWN_RETRY_S = 0.25
OWN_RETRY_STEP_S = 0.01


# Homes this process already checked: one warning per command run, not per call.
_checked: set[Path] = set()
_quiet = False


def home(path: str | os.PathLike[str] | None = None) -> Path:
    """`$LOOM_HOME` (default `~/.loom`), created private to the user.

    An existing home keeps its mode, since the operator chose it; when other users may
    read or write it, stderr gets one warning (the messages and prompts inside are
    private, and so is everything loom creates there).
    """
    raw = os.fspath(path) if path is not None else settings.HOME.get()
    root = Path(raw).expanduser()
    if not root.is_dir():
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
    elif root not in _checked and not _quiet:
        _checked.add(root)
        warning = exposure(root)
        if warning is not None:
            print(f"loom: warning: {warning}", file=sys.stderr, flush=True)
    return root


def exposure(root: Path) -> str | None:
    """Why `root` is open to other users (group or others may read, write or enter it)."""
    try:
        mode = stat.S_IMODE(root.stat().st_mode)
    except OSError:
        return None
    if not mode & 0o077:
        return None
    return f"{root} is open to other users (mode {mode:04o}); make it private: chmod 700 {root}"


def warned_elsewhere() -> None:
    """Do not warn about the home in this process: the one that started it already did
    (a supervisor's child, whose stderr is its `stderr.log` and crash records)."""
    global _quiet
    _quiet = True


def now_iso(at: float | None = None) -> str:
    """The current UTC time (or `at`, a time.time()) as ISO 8601 with milliseconds."""
    if at is not None:
        # Imported here: `loom send` does not import datetime.
        from datetime import UTC, datetime

        moment = datetime.fromtimestamp(at, UTC)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    # Cut down, as datetime.now() does, to the millisecond: the text is the same.
    second, ms = divmod(time.time_ns() // 1_000_000, 1000)
    return f"{_second_text(second)}.{ms:03d}Z"


def today() -> str:
    """The current UTC date, `YYYY-MM-DD` (the name of a day's log or conversation file)."""
    return _second_text(time.time_ns() // 1_000_000_000)[:10]


# The last second formatted, and its text. Every log line and conversation record reads
# the clock, and formatting a datetime costs a few microseconds each time; a burst of
# messages falls within a few seconds. Keyed by the second itself, so the text follows
# midnight and any step of the clock.
_formatted: tuple[int, str] = (-1, "")


def _second_text(second: int) -> str:
    """`second` (Unix time) as `YYYY-MM-DDTHH:MM:SS` in UTC."""
    global _formatted
    cached, text = _formatted
    if second != cached:
        t = time.gmtime(second)
        text = (
            f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}"
            f"T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
        )
        _formatted = (second, text)  # one assignment: threads see a whole pair
    return text


class ProcessDir:
    """The folder of one agent or pipe instance; agents and pipes share this layout."""

    def __init__(self, root: Path, kind: str, name: str) -> None:
        if kind not in KINDS:
            raise ValueError(kind)
        self.name = validate_process_name(name)
        self.kind = kind
        self.path = root / kind / self.name
        self.inbox = self.path / "inbox"
        self.outbox = self.path / "outbox"
        self.logs = self.path / "logs"
        self.crashes = self.path / "crashes"
        self.conversations = self.path / "conversations"
        self.prompt = self.path / "prompt.md"  # an agent's system prompt (SPEC 3)
        self.memory = self.path / "memory"
        self.state = self.path / "state"
        self.steps = self.path / "steps"

    def __repr__(self) -> str:
        return f"ProcessDir({self.kind}/{self.name})"

    def create(self) -> ProcessDir:
        """Create the folders a process needs (idempotent)."""
        atomic.make_private_dir(self.path.parent)
        for d in (
            self.inbox / ".in-progress",
            self.inbox / ".processed",
            self.inbox / ".failed",
            self.inbox / ".unreadable",
            self.outbox,
            self.logs,
            self.crashes,
        ):
            atomic.make_private_dir(d)
        return self

    def exists(self) -> bool:
        return self.path.is_dir()

    # Single-line files (status, pid, model, restart, started_at, stopped_at, ...).
    def read(self, field: str) -> str | None:
        """The stripped content of a single-line file, or None when absent or unreadable.

        A FIFO, device, directory or oversize file in its place reads as absent, without
        blocking: the supervisor and `ps` then pass over that process as for a missing
        status, instead of hanging on it.
        """
        try:
            data = files.read_bounded(self.path / field, files.FIELD_LIMIT, field)
        except (FileNotFoundError, NotADirectoryError, files.NotARegularFile, files.FileTooLarge):
            return None
        return data.decode("utf-8", errors="replace").strip()

    def write(self, field: str, value: str) -> None:
        atomic.write_text(self.path / field, value + "\n" if value else "")

    @property
    def status(self) -> str | None:
        return self.read("status")

    def set_status(self, status: str) -> None:
        if status not in STATUSES:
            raise ValueError(status)
        self.write("status", status)

    @property
    def pid(self) -> int | None:
        raw = self.read("pid")
        if not raw:
            return None
        try:
            return int(raw)
        except ValueError:
            return None

    @property
    def restarts(self) -> int:
        """How many times the supervisor restarted this process (the `restarts` file)."""
        raw = self.read("restarts") or ""
        return int(raw) if raw.isdigit() else 0

    def request_stop(self, pid: int) -> None:
        """Record that process `pid` is being stopped, before it is signalled.

        Whoever reaps `pid` then knows its exit was a stop, whatever the status file
        says by that time (`loom up` writes `pending` right after a restart's stop).
        """
        self.write(STOP_FILE, str(pid))

    def stop_requested(self, pid: int) -> bool:
        """Whether a stop was asked for this very pid (not an earlier one)."""
        return self.read(STOP_FILE) == str(pid)

    def forget_stop(self) -> None:
        """Drop an old stop request, so a new process that reuses the pid is not taken for it."""
        with contextlib.suppress(FileNotFoundError):
            (self.path / STOP_FILE).unlink()

    @property
    def concurrency(self) -> int | None:
        """The `concurrency` file: 1 when there is none; None when it holds anything but
        a number from 1 to MAX_CONCURRENCY."""
        raw = (self.read("concurrency") or "1").strip()
        value = int(raw) if raw.isdigit() else None
        return value if concurrency_problem(value) is None else None

    @property
    def project(self) -> str | None:
        """The project (weave) that started this process; None when started by hand."""
        return self.read(PROJECT_FILE) or None

    def disown(self) -> None:
        """Forget the project that started this process: it is now a hand-started one."""
        self.forget(PROJECT_FILE, WEAVE_FILE)

    def forget(self, *fields: str) -> None:
        """Remove these one-line files (a setting back at its default leaves no file)."""
        for field in fields:
            with contextlib.suppress(FileNotFoundError):
                (self.path / field).unlink()

    def alive_pid(self) -> int | None:
        """The pid from the pid file if that process is alive and runs this process.

        That is a loom process, or, for a runner of the original TypeScript loom, any
        process the status says runs that was started before the pid file was written
        (a pid reused later by another program started after it).
        """
        pid = self.pid
        if pid is None:
            return None
        if pid_is_loom(pid):
            return pid
        if self.status not in ("running", "idle"):
            return None
        started = process_start(pid)
        try:
            written = (self.path / "pid").stat().st_mtime
        except OSError:
            return None
        return pid if started is not None and started <= written + START_SLACK_S else None

    # The queue's owner (SPEC 4): one process at a time serves this folder.
    @property
    def lock_path(self) -> Path:
        return self.path / LOCK_FILE

    def own(self) -> Ownership:
        """Become the one process that serves this queue, for as long as it lives.

        The ownership is of the whole queue, not of one message: everything in
        `.in-progress/` belongs to the owner, so `recover` may re-queue it only when
        no owner holds it, and one owner with N claims in flight (`concurrency: N`)
        needs no other lock. Raise AlreadyServed when another process owns it.
        """
        atomic.make_private_dir(self.path)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        deadline = time.monotonic() + OWN_RETRY_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise AlreadyServed(self, self.owner_pid()) from None
                time.sleep(OWN_RETRY_STEP_S)
        # Written in place, not by rename: a new inode would carry no lock. The line is
        # a few bytes, so a reader sees it whole or (for a moment) an empty file.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return Ownership(fd)

    def owner_pid(self) -> int | None:
        """The pid of the process that owns this queue now; None when nobody does.

        The kernel drops the lock when its holder dies, however it dies, so this never
        names a dead process. 0 means owned by a process whose pid is not known.
        """
        try:
            fd = os.open(self.lock_path, os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                raw = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
                if raw.isdigit():
                    return int(raw)
                return self.pid or 0  # between the owner's lock and its pid line
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def served_by(self) -> int | None:
        """The pid of the process that serves this queue now, None when none does.

        The one answer to "is it running" for `ps`, `stop`, `gc` and `loom up`. The
        queue's lock is the truth (SPEC 4); the pid file answers only when nobody holds
        the lock: for a runner of the original TypeScript loom, which takes none, and for
        a child the supervisor just spawned that has not taken it yet. 0 means served by
        a process whose pid is not known.
        """
        owner = self.owner_pid()
        if owner:
            return owner
        alive = self.alive_pid()
        return alive if alive is not None else owner


def process_start(pid: int) -> float | None:
    """When process `pid` started, in Unix seconds; None when it is gone or a zombie, or
    when there is no /proc to tell."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text("ascii", errors="replace")
    except OSError:
        return None
    # proc(5): the command name in parentheses may hold spaces; fields follow the last ")".
    fields = stat[stat.rfind(")") + 2 :].split()
    if len(fields) < 20 or fields[0] in ("Z", "X") or not fields[19].isdigit():
        return None
    boot = _boot_time()
    if boot is None:
        return None
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: ticks after boot


@functools.cache
def _boot_time() -> float | None:
    try:
        with open("/proc/stat", encoding="ascii") as f:
            for line in f:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie (whatever program it runs)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError, OverflowError):  # Overflow: no such pid
        return False
    if not Path(f"/proc/{pid}").is_dir():
        return True  # no /proc: trust kill(0)
    return process_start(pid) is not None


class Ownership:
    """A held queue lock (an flock on the process folder's `lock` file).

    Held until `release` or the process's end; the descriptor is close-on-exec, so
    no program the owner runs (tools, command operators) can keep it after a crash.
    """

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Give the queue up (idempotent); closing the descriptor drops the lock."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class AlreadyServed(LoomError):
    """A second process for an agent or pipe instance that another process serves."""

    def __init__(self, proc: ProcessDir, pid: int | None) -> None:
        what = "agent" if proc.kind == "agents" else "pipe instance"
        by = f"pid {pid}" if pid else "another process"
        super().__init__(
            f"{what} '{proc.name}' is already served by {by}; send it messages with "
            f"'loom send {proc.name} ...', or stop it first with 'loom agent stop {proc.name}'"
        )
        self.proc = proc
        self.pid = pid


def pid_is_loom(pid: int) -> bool:
    """Whether `pid` is alive and runs loom (guards against pid reuse by other programs)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError, OverflowError):  # Overflow: no such pid
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc: trust kill(0)
    if not cmdline:
        return False  # a zombie has an empty command line
    return b"loom" in cmdline


def agent(name: str, root: Path | None = None) -> ProcessDir:
    """The folder of agent `name` (not created)."""
    return ProcessDir(root or home(), "agents", validate_name(name, "agent name"))


def pipe_instance(name: str, root: Path | None = None) -> ProcessDir:
    """The folder of pipe instance `name` (not created)."""
    return ProcessDir(root or home(), "pipes", name)


def find(name: str, root: Path | None = None) -> ProcessDir:
    """The agent or pipe instance called `name`; raise NotFound when neither exists."""
    name = validate_process_name(name)
    base = root or home()
    for kind in KINDS:
        candidate = ProcessDir(base, kind, name)
        if (candidate.path / "status").exists() or (kind == "agents" and candidate.exists()):
            return candidate
    raise NotFound(f"no agent or pipe named '{name}' under {base}; see 'loom agent ps --all'")


def all_processes(root: Path | None = None, *, unstarted: bool = False) -> list[ProcessDir]:
    """Every agent and pipe instance under the home, agents first, each kind by name.

    This is the one answer to "what exists" for `ps`, `stats`, `trace`, `gc`, the
    supervisor and `loom up`. A process is a folder of `agents/` or `pipes/` with a valid
    name (anything else there is not loom's to touch) and a status file. With
    `unstarted`, a folder that holds an inbox or an outbox but no status counts too:
    the queue `loom send` makes for a name not started yet, or a folder left half
    created; its messages are still there to trace, count and tidy. A pipe's folder
    holding only its definition (`pipes/<pipe>/config.json`) is never a process.
    """
    base = root or home()
    found: list[ProcessDir] = []
    for kind in KINDS:
        try:
            names = sorted(os.listdir(base / kind))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in names:
            if not is_process(base / kind / name, unstarted=unstarted):
                continue
            with contextlib.suppress(LoomError):
                found.append(ProcessDir(base, kind, name))
    return found


def is_process(path: Path, *, unstarted: bool = False) -> bool:
    """Whether the folder `path` (under `agents/` or `pipes/`) is a process as
    `all_processes` counts them: a status file, or with `unstarted` an inbox or outbox."""
    return (path / "status").is_file() or (
        unstarted and ((path / "inbox").is_dir() or (path / "outbox").is_dir())
    )
