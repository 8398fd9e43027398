"""Benchmarks of the supervisor: idle CPU with many children, and restart time.

Run:  .venv/bin/python bench/supervisor.py [idle|restart|all] [--agents 50] [--pipes 50]
Pipe instances are counted in only when a pipe engine is installed (`loom pipe start`).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import LOOM, cleanup, env_for, stop_home, table, temp_home  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def wait(condition, timeout: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit("timed out")
        time.sleep(0.05)


def place_agent(home: Path, name: str) -> None:
    d = home / "agents" / name
    (d / "inbox").mkdir(parents=True)
    for f, v in {
        "model": "echo",
        "mode": "detached",
        "restart": "always",
        "status": "pending",
    }.items():
        (d / f).write_text(v + "\n")


def place_pipe(home: Path, name: str) -> None:
    d = home / "pipes" / name
    (d / "inbox").mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"name": name, "operators": [{"map": "@"}]}))
    for f, v in {"mode": "detached", "restart": "always", "status": "pending"}.items():
        (d / f).write_text(v + "\n")


def _stop(sup: subprocess.Popen[bytes] | None, home: Path) -> None:
    """Stop the supervisor (it logs into `home`) and its runners, then remove the home."""
    try:
        if sup is not None and sup.poll() is None:
            sup.send_signal(signal.SIGTERM)
            try:
                sup.wait(10)
            except subprocess.TimeoutExpired:
                sup.kill()
                sup.wait()
        stop_home(home)
    finally:
        cleanup(home)


def idle_cpu(agents: int, pipes: int, seconds: float) -> tuple[float, int]:
    home = temp_home("tmpfs")
    env = env_for(home)
    sup = None
    try:
        for i in range(agents):
            place_agent(home, f"agent-{i}")
        for i in range(pipes):
            place_pipe(home, f"pipe-{i}")
        sup = subprocess.Popen([*LOOM, "supervisor", "run"], env=env, stderr=subprocess.DEVNULL)
        total = agents + pipes

        def settled() -> bool:
            statuses = [p.read_text().strip() for p in home.glob("*/*/status")]
            return sum(s == "idle" for s in statuses) == total

        wait(settled, timeout=300)
        time.sleep(2.0)  # let start-up work finish
        before = cpu_seconds(sup.pid)
        time.sleep(seconds)
        used = cpu_seconds(sup.pid) - before
    finally:
        _stop(sup, home)
    return used / seconds * 100, total


def _one_restart() -> tuple[float, float]:
    home = temp_home("tmpfs")
    env = env_for(home)
    sup = None
    try:
        place_agent(home, "a")
        sup = subprocess.Popen([*LOOM, "supervisor", "run"], env=env, stderr=subprocess.DEVNULL)
        status = home / "agents/a/status"
        pidfile = home / "agents/a/pid"
        wait(lambda: status.read_text().strip() == "idle")
        victim = int(pidfile.read_text())
        os.kill(victim, signal.SIGKILL)
        killed = time.perf_counter()
        wait(lambda: status.read_text().strip() == "restarting")
        wait(
            lambda: (
                status.read_text().strip() == "idle"
                and pidfile.read_text().strip() not in ("", str(victim))
            )
        )
        total = time.perf_counter() - killed
        log = "".join(p.read_text() for p in (home / "supervisor/logs").iterdir())
        delay = next(
            json.loads(line)["restart_in_s"] for line in log.splitlines() if '"crashed"' in line
        )
    finally:
        _stop(sup, home)
    return total, total - delay


def restart_time(samples: int) -> list[tuple[float, float]]:
    """(total, overhead) seconds from SIGKILL of a runner to its status being idle again.

    The overhead is the total less the backoff delay the supervisor chose (its log says).
    """
    return [_one_restart() for _ in range(samples)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("section", nargs="?", default="all", choices=["all", "idle", "restart"])
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--pipes", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0, help="idle CPU sampling window")
    parser.add_argument("--samples", type=int, default=5, help="restart samples")
    args = parser.parse_args()
    rows = [["measure", "loom", "goal"]]
    if args.section in ("all", "idle"):
        pct, n = idle_cpu(args.agents, args.pipes, args.seconds)
        rows.append([f"supervisor CPU, {n} idle children", f"{pct:.2f}% of a core", "< 2%"])
    if args.section in ("all", "restart"):
        samples = restart_time(args.samples)
        totals = sorted(t for t, _ in samples)
        overheads = sorted(o for _, o in samples)
        mid = len(samples) // 2
        rows.append(
            ["SIGKILL -> idle again, total", f"median {totals[mid]:.2f} s", "~1 s + jitter"]
        )
        rows.append(
            ["  of it not backoff delay", f"median {overheads[mid] * 1000:.0f} ms", "< 200 ms"]
        )
    print(table(rows))


if __name__ == "__main__":
    main()
