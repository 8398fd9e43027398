"""Helpers shared by the benchmark scripts: timing commands, temporary homes, tables."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOOM = [sys.executable, "-m", "loom"]
if (Path(sys.executable).parent / "loom").exists():
    LOOM = [str(Path(sys.executable).parent / "loom")]


def temp_home(where: str) -> Path:
    """A fresh LOOM_HOME on tmpfs (`tmpfs`) or on the disk (`disk`)."""
    base = "/dev/shm" if where == "tmpfs" and os.path.isdir("/dev/shm") else None
    return Path(tempfile.mkdtemp(prefix="loom-bench-", dir=base))


def cleanup(path: Path) -> None:
    """Remove a bench home; stop what runs in it first (stop_pid), or it writes back."""
    for _ in range(50):
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            return
        time.sleep(0.1)
    print(f"bench: could not remove {path}", file=sys.stderr)


def stop_pid(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM a process that is not our child, SIGKILL it after `timeout`, wait until gone."""
    import signal

    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists():
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[:1]
        if state == ["Z"]:
            return
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            deadline += timeout
        time.sleep(0.02)


def stop_home(home: Path) -> None:
    """Stop the supervisor and every runner whose pid file is in `home`."""
    pidfiles = [home / "supervisor.pid", *home.glob("*/*/pid")]
    for pidfile in pidfiles:
        try:
            raw = pidfile.read_text().strip()
        except OSError:
            continue
        if raw.isdigit() and int(raw) != os.getpid():
            stop_pid(int(raw))


def env_for(home: Path, fsync: bool = False) -> dict[str, str]:
    env = dict(os.environ)
    env["LOOM_HOME"] = str(home)
    env["LOOM_FSYNC"] = "1" if fsync else "0"
    return env


def time_command(
    cmd: Sequence[str], runs: int, env: dict[str, str], stdin: bytes | None = None
) -> list[float]:
    """Wall time of `runs` runs of `cmd`, in seconds."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(cmd, input=stdin or b"", stdout=subprocess.DEVNULL, env=env, check=True)
        times.append(time.perf_counter() - started)
    return times


def start_agent(
    env: dict[str, str], concurrency: int, cwd: Path | None = None, model: str = "openai/bench"
) -> None:
    """Start agent `a` detached on `model` with `concurrency` calls in flight."""
    subprocess.run(
        [*LOOM, "agent", "start", "a", "--model", model, "-d"]
        + ["--concurrency", str(concurrency)],
        env=env,
        check=True,
        capture_output=True,
        cwd=cwd,
    )


def cpu_seconds(pid: int) -> float:
    """A process's CPU time so far (utime + stime from /proc/PID/stat), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def send_messages(inbox: Path, count: int) -> None:
    """Put `count` messages in `inbox` the way `loom send` does (write, then rename)."""
    from loom.store.message import new_message

    for i in range(count):
        msg = new_message("bench", f"message {i}")
        temporary = inbox / f".{msg.filename}.tmp"
        temporary.write_bytes(msg.to_bytes())
        temporary.rename(inbox / msg.filename)


def median_ms(times: Sequence[float]) -> float:
    return statistics.median(times) * 1000


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def hop_latencies(
    inbox: Path, outbox: Path, samples: int, body: Callable[[int], str]
) -> list[float]:
    """Milliseconds from renaming a message into `inbox` until `outbox` holds one more file.

    One message at a time, so each sample is the latency of an idle system.
    """
    from loom.store.message import new_message
    from loom.store.watch import watcher

    outbox.mkdir(parents=True, exist_ok=True)
    watch = watcher([outbox])
    results = []
    try:
        for i in range(samples):
            msg = new_message("bench", body(i))
            tmp = inbox / f".tmp-{i}"
            tmp.write_bytes(msg.to_bytes())
            before = len(os.listdir(outbox))
            started = time.perf_counter()
            os.rename(tmp, inbox / msg.filename)
            while len(os.listdir(outbox)) == before:
                watch.wait(1.0)
            results.append((time.perf_counter() - started) * 1000)
    finally:
        watch.close()
    return results
