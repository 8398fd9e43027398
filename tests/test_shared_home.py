"""One `$LOOM_HOME` shared with the original TypeScript loom: its live runners, its
crash record names and its log lines are understood (SPEC 2: the on-disk format stays
compatible)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import run_loom, wait_for

from loom.supervisor.policy import recent_failures


@pytest.fixture
def original_runner() -> Iterator[subprocess.Popen[bytes]]:
    """A long-lived process whose command line is `bun 60`, like the original's runner."""
    p = subprocess.Popen(["bun", "60"], executable=shutil.which("sleep"))
    wait_for(lambda: Path(f"/proc/{p.pid}/cmdline").read_bytes().startswith(b"bun"))
    yield p
    if p.poll() is None:
        p.kill()
    p.wait(timeout=10)


def agent_of_the_original(home: Path, name: str, pid: int, status: str = "idle") -> Path:
    """The folder the original leaves for a running agent: status, pid, model."""
    folder = home / "agents" / name
    for sub in ("inbox", "outbox", "logs", "crashes"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / "model").write_text("ollama/qwen3:8b\n")
    (folder / "status").write_text(f"{status}\n")
    (folder / "pid").write_text(f"{pid}\n")
    return folder


def ps(*flags: str) -> dict[str, dict[str, object]]:
    r = run_loom("agent", "ps", "--json", *flags)
    assert r.returncode == 0, r.stderr
    return {row["name"]: row for row in json.loads(r.stdout)}


def test_ps_and_stop_see_a_live_runner_of_the_original(
    loom_home: Path, original_runner: subprocess.Popen[bytes]
) -> None:
    agent_of_the_original(loom_home, "orig", original_runner.pid)
    row = ps()["orig"]
    assert row["status"] == "idle" and row["pid"] == original_runner.pid
    r = run_loom("agent", "stop", "orig")
    assert r.returncode == 0, r.stderr
    assert "was not running" not in r.stderr
    assert original_runner.wait(timeout=10) == -signal.SIGTERM
    assert (loom_home / "agents/orig/status").read_text().strip() == "stopped"


def test_a_pid_taken_by_a_program_started_after_the_pid_file_is_not_trusted(
    loom_home: Path, original_runner: subprocess.Popen[bytes]
) -> None:
    folder = agent_of_the_original(loom_home, "orig", original_runner.pid)
    written = time.time() - 60  # the pid file is older than the process now using the pid
    os.utime(folder / "pid", (written, written))
    assert ps("--all")["orig"]["status"] == "error"
    assert "orig" not in ps()
    r = run_loom("agent", "stop", "orig")
    assert "was not running" in r.stderr
    assert original_runner.poll() is None  # not signalled


def test_a_zombie_or_a_stopped_status_is_not_trusted(
    loom_home: Path, original_runner: subprocess.Popen[bytes]
) -> None:
    agent_of_the_original(loom_home, "said-stopped", original_runner.pid, status="stopped")
    exited = subprocess.Popen(["bun", "0"], executable=shutil.which("sleep"))
    agent_of_the_original(loom_home, "zombie", exited.pid)
    # Not waited for yet: it stays a zombie until then.
    wait_for(lambda: Path(f"/proc/{exited.pid}/stat").read_text().rsplit(")", 1)[1][1] == "Z")
    try:
        rows = ps("--all")
        assert rows["zombie"]["status"] == "error" and rows["zombie"]["pid"] is None
        assert rows["said-stopped"]["status"] == "stopped"
        assert rows["said-stopped"]["pid"] is None
    finally:
        exited.wait(timeout=10)


def crash(folder: Path, seconds_ago: float, digits: int) -> Path:
    """A crash record named as ms (13 digits), µs (16) or ns (19, the original's)."""
    stamp = int((time.time() - seconds_ago) * 10 ** (digits - 10))
    path = folder / f"{stamp}-{os.urandom(8).hex()}.json"
    path.write_text(json.dumps({"exitCode": 1}))
    return path


def test_crash_records_named_in_micro_or_nanoseconds_age_like_ours(loom_home: Path) -> None:
    folder = agent_of_the_original(loom_home, "orig", 0, status="stopped") / "crashes"
    recent = [crash(folder, 60, digits) for digits in (13, 16, 19)]
    old = [crash(folder, 2 * 3600, digits) for digits in (13, 16, 19)]
    ancient = [crash(folder, 100 * 86400, digits) for digits in (13, 16, 19)]
    assert recent_failures(folder) == len(recent)
    r = run_loom("gc")
    assert r.returncode == 0, r.stderr
    assert all(p.name in r.stdout for p in ancient)
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in recent + old)


def original_log(folder: Path, records: list[dict[str, object]]) -> None:
    """Log lines as the original writes them: compact JSON, level `warn`."""
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    lines = [json.dumps(r, separators=(",", ":")) for r in records]
    (folder / "logs" / f"{day}.ndjson").write_text("\n".join(lines) + "\n")


def test_logs_and_stats_read_lines_in_the_original_shape(loom_home: Path) -> None:
    folder = agent_of_the_original(loom_home, "orig", 0, status="stopped")
    ts = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    original_log(
        folder,
        [
            {"ts": ts, "level": "info", "event": "claimed", "process": "orig", "msg": "1-A.msg"},
            {"ts": ts, "level": "warn", "event": "retrying", "process": "orig", "msg": "1-A.msg"},
            {"ts": ts, "level": "info", "event": "replied", "process": "orig", "msg": "1-A.msg"},
            {"ts": ts, "level": "error", "event": "failed", "process": "orig", "msg": "2-B.msg"},
        ],
    )

    def events(level: str) -> list[str]:
        r = run_loom("agent", "logs", "orig", "--json", "--level", level)
        assert r.returncode == 0, r.stderr
        return [json.loads(line)["event"] for line in r.stdout.splitlines()]

    assert events("warning") == ["retrying", "failed"]
    assert events("error") == ["failed"]
    r = run_loom("stats", "--json")
    assert r.returncode == 0, r.stderr
    [row] = [p for p in json.loads(r.stdout)["processes"] if p["name"] == "orig"]
    assert (row["received"], row["processed"], row["failed"]) == (1, 1, 1)
