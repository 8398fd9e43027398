"""Benchmarks of the foundation: start-up, a foreground answer, draining, latency, memory.

Run:  .venv/bin/python bench/agent.py            (all, a few minutes)
      .venv/bin/python bench/agent.py startup    (one section)
The original loom's figures on the same kind of machine are printed alongside.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import (  # noqa: E402
    LOOM,
    cleanup,
    env_for,
    hop_latencies,
    median_ms,
    percentile,
    table,
    temp_home,
    time_command,
)

from loom.store.message import new_message  # noqa: E402


def startup(runs: int) -> list[list[str]]:
    home = temp_home("tmpfs")
    env = env_for(home)
    try:
        helps = time_command([*LOOM, "--help"], runs, env)
        sends = time_command([*LOOM, "send", "a", "--create", "hello"], runs, env)
        stdin = time_command(
            [*LOOM, "agent", "start", "a", "--model", "echo", "--stdin"], runs, env, b"hi\n"
        )
    finally:
        cleanup(home)
    return [
        ["loom --help (median)", f"{median_ms(helps):.0f} ms", "17 ms", "< 150 ms"],
        ["loom send (median)", f"{median_ms(sends):.0f} ms", "24 ms", "< 150 ms"],
        ["echo hi | agent --stdin (median)", f"{median_ms(stdin):.0f} ms", "97 ms", "< 200 ms"],
    ]


def _place(home: Path, count: int) -> Path:
    inbox = home / "agents" / "a" / "inbox"
    inbox.mkdir(parents=True)
    for i in range(count):
        msg = new_message("bench", f"message {i}")
        (inbox / msg.filename).write_bytes(msg.to_bytes())
    return home / "agents" / "a" / "outbox"


def _echo_runner(home: Path, fsync: bool = False) -> subprocess.Popen[bytes]:
    """An echo agent `a` serving its inbox; returns once it has started (its status file)."""
    proc = subprocess.Popen(
        [*LOOM, "agent", "start", "a", "--model", "echo"],
        env=env_for(home, fsync),
        stdout=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    while not (home / "agents" / "a" / "status").exists():
        time.sleep(0.001)
    return proc


def drain(count: int, where: str, fsync: bool) -> float:
    """Messages per second for one echo agent answering `count` pre-placed messages."""
    home = temp_home(where)
    try:
        outbox = _place(home, count)
        # Timed from the runner's start (its status file), not from the fork.
        proc = _echo_runner(home, fsync)
        started = time.perf_counter()
        while not outbox.is_dir() or len(os.listdir(outbox)) < count:
            time.sleep(0.005)
        elapsed = time.perf_counter() - started
        proc.terminate()
        proc.wait(10)
    finally:
        cleanup(home)
    return count / elapsed


def latency(samples: int) -> tuple[float, float]:
    """Median and p90 ms from a message renamed into the inbox to its reply in the outbox."""
    home = temp_home("tmpfs")
    try:
        inbox = home / "agents" / "a" / "inbox"
        outbox = home / "agents" / "a" / "outbox"
        inbox.mkdir(parents=True)
        outbox.mkdir(parents=True)
        proc = _echo_runner(home)
        time.sleep(0.3)
        results = hop_latencies(inbox, outbox, samples, lambda i: f"ping {i}")
        proc.terminate()
        proc.wait(10)
    finally:
        cleanup(home)
    return percentile(results, 50), percentile(results, 90)


def idle_rss() -> float:
    """Peak resident memory (MiB) of a runner that started and waits for messages."""
    home = temp_home("tmpfs")
    try:
        proc = _echo_runner(home)
        time.sleep(1.0)
        status = Path(f"/proc/{proc.pid}/status").read_text()
        hwm = next(line for line in status.splitlines() if line.startswith("VmHWM"))
        proc.terminate()
        proc.wait(10)
    finally:
        cleanup(home)
    return int(hwm.split()[1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "section", nargs="?", default="all", choices=["all", "startup", "drain", "latency", "rss"]
    )
    parser.add_argument("--runs", type=int, default=20, help="runs per start-up figure")
    parser.add_argument("--messages", type=int, default=1000, help="messages to drain")
    parser.add_argument("--samples", type=int, default=200, help="latency samples")
    args = parser.parse_args()
    rows = [["measure", "loom", "original", "goal"]]
    if args.section in ("all", "startup"):
        rows += startup(args.runs)
    if args.section in ("all", "drain"):
        n = args.messages
        rows.append(
            [
                f"drain {n}, tmpfs, fsync off",
                f"{drain(n, 'tmpfs', False):.0f} msg/s",
                "970 msg/s",
                ">= 3000 msg/s",
            ]
        )
        rows.append(
            [f"drain {n}, tmpfs, fsync on", f"{drain(n, 'tmpfs', True):.0f} msg/s", "-", "-"]
        )
        rows.append(
            [
                f"drain {n}, disk, fsync off",
                f"{drain(n, 'disk', False):.0f} msg/s",
                "255 msg/s",
                "-",
            ]
        )
        rows.append([f"drain {n}, disk, fsync on", f"{drain(n, 'disk', True):.0f} msg/s", "-", "-"])
    if args.section in ("all", "latency"):
        p50, p90 = latency(args.samples)
        rows.append(["inbox -> outbox latency, median", f"{p50:.2f} ms", "99 ms", "< 5 ms"])
        rows.append(["inbox -> outbox latency, p90", f"{p90:.2f} ms", "171 ms", "< 10 ms"])
    if args.section in ("all", "rss"):
        rows.append(["idle runner peak RSS", f"{idle_rss():.1f} MiB", "38.9 MiB", "< 30 MiB"])
    print(table(rows))


if __name__ == "__main__":
    main()
