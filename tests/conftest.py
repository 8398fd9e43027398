"""Shared fixtures: every test gets its own LOOM_HOME and a cleaned environment (STYLE 12)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from llm_server import LLMServer

ROOT = Path(__file__).resolve().parent.parent
# Variables that would make a test depend on the machine it runs on.
_DROP_PREFIXES = ("LOOM_", "OPENAI_", "ANTHROPIC_", "OPENROUTER_", "OLLAMA_")
# A proxy of the machine's would take the tests' calls to their local servers elsewhere.
_DROP_NAMES = {f"{n}_proxy" for n in ("http", "https", "all", "no")}
FAST_INTERVALS = {
    "LOOM_SUPERVISOR_RESCAN": "0.5",
    "LOOM_SUPERVISOR_LINGER": "0.5",
    "LOOM_ADOPTED_POLL": "0.1",
    "LOOM_STATS_EVERY": "0.2",
    "LOOM_METRICS_EVERY": "0.5",
    # A runner also rescans its inbox between watcher events (a file put back by another
    # process raises none); tests of waking on a new message set a long one.
    "LOOM_WORKER_RESCAN": "0.1",
    # A crashed child comes back after 0.05-0.1 s instead of 1-1.5 s; tests of the
    # backoff itself set their own base and jitter.
    "LOOM_RESTART_BASE": "0.05",
    "LOOM_RESTART_JITTER": "0.05",
}


@pytest.fixture(autouse=True)
def loom_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private LOOM_HOME under tmp_path, fsync off for speed, no provider settings.

    The umask is 077 so that folders a test makes itself are private like loom's own
    (loom warns about a home open to others); tests of modes set their own umask.
    """
    for key in list(os.environ):
        if key.startswith(_DROP_PREFIXES) or key.lower() in _DROP_NAMES:
            monkeypatch.delenv(key, raising=False)
    home = tmp_path / "home"
    monkeypatch.setenv("LOOM_HOME", str(home))
    monkeypatch.setenv("LOOM_FSYNC", "0")
    monkeypatch.setenv("LOOM_RETRY_BASE", "0.01")
    # The supervisor's periodic jobs, made short so tests wait on events, not on the
    # production intervals (the behaviour does not depend on their length).
    for key, value in FAST_INTERVALS.items():
        monkeypatch.setenv(key, value)
    from loom.store import atomic

    atomic.set_fsync(None)
    umask = os.umask(0o077)
    yield home
    os.umask(umask)


def loom_cmd(*args: str) -> list[str]:
    """The real CLI, as a user runs it."""
    return [sys.executable, "-m", "loom", *args]


def run_loom(
    *args: str,
    input: bytes | str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `loom ARGS` to completion; stdout/stderr as text."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    data = input.encode() if isinstance(input, str) else input
    proc = subprocess.run(
        loom_cmd(*args),
        input=data if data is not None else b"",
        capture_output=True,
        env=full_env,
        timeout=timeout,
        cwd=cwd,
    )
    return subprocess.CompletedProcess(
        proc.args,
        proc.returncode,
        proc.stdout.decode("utf-8", errors="replace"),
        proc.stderr.decode("utf-8", errors="replace"),
    )


def spawn_loom(*args: str, env: dict[str, str] | None = None, **kw: Any) -> subprocess.Popen[bytes]:
    """Start `loom ARGS` in the background (stdin closed unless given)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    kw.setdefault("stdin", subprocess.DEVNULL)
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen(loom_cmd(*args), env=full_env, **kw)


def logged_events(process: Path) -> list[str]:
    """The events of the log lines a process (a folder with `logs/`) has written whole
    so far; a line still being written is left out."""
    events = []
    for path in sorted((process / "logs").glob("*.ndjson")):
        *whole, _rest = path.read_text().split("\n")
        events += [json.loads(line)["event"] for line in whole]
    return events


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll `condition` until it returns something truthy; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def reap() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test started; killed at the end whatever happened."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)
        for stream in (p.stdout, p.stderr, p.stdin):
            if stream is not None:
                stream.close()


def crash_records(proc: Path) -> list[dict[str, Any]]:
    """The crash records of process folder `proc`, oldest first; one being written is not one."""
    folder = proc / "crashes"
    if not folder.is_dir():
        return []
    return [json.loads(p.read_text()) for p in sorted(folder.glob("[!.]*.json"))]


def kill_supervisor(home: Path, signum: int = signal.SIGKILL) -> None:
    """End the supervisor of `home`, if one runs (a test's teardown)."""
    from loom.store.home import pid_is_loom

    sup = home / "supervisor.pid"
    try:
        raw = sup.read_text().strip()
    except FileNotFoundError:
        return
    if raw.isdigit() and pid_is_loom(int(raw)):
        os.kill(int(raw), signum)


@pytest.fixture
def server() -> Iterator[LLMServer]:
    """The test suite's fake model server (tests/llm_server.py), for one test."""
    with LLMServer() as fake:
        yield fake


@pytest.fixture
def weave_dir(tmp_path: Path, loom_home: Path) -> Iterator[Path]:
    """An empty project folder; whatever the test brought up there is taken down after."""
    work = tmp_path / "w"
    work.mkdir()
    yield work
    run_loom("down", cwd=work)
    kill_supervisor(loom_home)
