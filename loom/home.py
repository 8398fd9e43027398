"""Where things live under `$LOOM_HOME` (SPEC 3), and the small status files."""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from datetime import UTC, datetime
from pathlib import Path

from loom import atomic, settings
from loom.errors import NotFound
from loom.names import validate_name, validate_process_name

STATUSES = ("pending", "running", "idle", "stopped", "restarting", "dead", "error")
KINDS = ("agents", "pipes")


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


def now_iso() -> str:
    """The current UTC time as ISO 8601 with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


class ProcessDir:
    """The folder of one agent or pipe instance; agents and pipes share this layout."""

    def __init__(self, root: Path, kind: str, name: str) -> None:
        if kind not in KINDS:
            raise ValueError(kind)
        self.name = validate_process_name(name)
        self.kind = kind
        self.path = root / kind / name
        self.inbox = self.path / "inbox"
        self.outbox = self.path / "outbox"
        self.logs = self.path / "logs"
        self.crashes = self.path / "crashes"
        self.conversations = self.path / "conversations"
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
        """The stripped content of a single-line file, or None when absent."""
        try:
            return (self.path / field).read_text("utf-8").strip()
        except (FileNotFoundError, NotADirectoryError):
            return None

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

    def alive_pid(self) -> int | None:
        """The pid from the pid file if that process is alive and is a loom process."""
        pid = self.pid
        return pid if pid is not None and pid_is_loom(pid) else None


def pid_is_loom(pid: int) -> bool:
    """Whether `pid` is alive and runs loom (guards against pid reuse by other programs)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
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
    validate_process_name(name)
    base = root or home()
    for kind in KINDS:
        candidate = ProcessDir(base, kind, name)
        if (candidate.path / "status").exists() or (kind == "agents" and candidate.exists()):
            return candidate
    raise NotFound(f"no agent or pipe named '{name}' under {base}; see 'loom agent ps --all'")


def all_processes(root: Path | None = None) -> list[ProcessDir]:
    """Every agent and pipe instance that has a status file, sorted by name."""
    base = root or home()
    found: list[ProcessDir] = []
    for kind in KINDS:
        with contextlib.suppress(FileNotFoundError):
            for entry in sorted(os.listdir(base / kind)):
                if (base / kind / entry / "status").exists():
                    with contextlib.suppress(Exception):
                        found.append(ProcessDir(base, kind, entry))
    return found
