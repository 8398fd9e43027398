"""Benchmark of `loom trace` and `loom gc` on a large home.

Generates a LOOM_HOME with N messages (100,000 by default) in 20 agents: runs of a
root message and its replies along a chain of agents (a00 → a01 → ... → a04, then
a05 → ... and so on), each message in its producer's outbox and, routed under the same
filename, in the next agent's inbox/.processed/, with routes.json, delivery logs and
runner logs as the runtime leaves them; timestamps spread over the last ten days.
Then times, with the real CLI:
  loom trace FILENAME     a message in the middle of a run in the middle of the home
  loom trace ID           the same message by its bare id (lists every folder)
  loom stats              counters from every log, queue depths
  loom gc                 with retention 0d: archives every processed and delivered file
  loom trace FILENAME     again, now that everything is in the archive
  loom gc                 again: nothing left to do

Run:  .venv/bin/python bench/trace_gc.py [--messages N] [--agents A] [--hops H]
      [--runs R] [--where disk|tmpfs]
The goal is a trace under 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import LOOM, cleanup, env_for, table, temp_home  # noqa: E402

from loom.store.ids import new_id  # noqa: E402
from loom.store.message import Message  # noqa: E402

DAY_MS = 86_400_000


def write(path: Path, data: str) -> None:
    path.write_text(data)


def generate(home: Path, messages: int, agents: int, hops: int) -> tuple[str, int]:
    """Fill `home`; return (the filename to trace, the number of message files)."""
    names = [f"a{i:02d}" for i in range(agents)]
    for name in names:
        base = home / "agents" / name
        for sub in ("inbox/.in-progress", "inbox/.processed", "inbox/.failed", "outbox", "logs"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        for field, value in (("status", "stopped"), ("model", "echo"), ("mode", "detached")):
            write(base / field, value + "\n")
    edges = [{"from": names[i], "to": names[i + 1]} for i in range(agents - 1)]
    write(home / "routes.json", json.dumps(edges, indent=1) + "\n")
    delivered: dict[str, list[str]] = {}
    logs: dict[str, list[str]] = {name: [] for name in names}
    per_run = hops + 1
    runs = messages // per_run
    start = int(time.time() * 1000) - 10 * DAY_MS
    step = (10 * DAY_MS - 60_000) // max(runs, 1)
    target = ""
    files = 0
    for run in range(runs):
        first = (run * hops) % (agents - hops) if agents > hops else 0
        ts = start + run * step
        ts, mid = new_id(ts)
        msg = Message(mid, "cli", ts, f"question {run}")
        consumer = names[first]
        for hop in range(hops + 1):
            base = home / "agents" / consumer
            (base / "inbox" / ".processed" / msg.filename).write_bytes(msg.to_bytes())
            files += 1
            if hop > 0:
                producer = names[first + hop - 1]
                delivered.setdefault(f"{producer}→{consumer}", []).append(msg.filename)
            if run == runs // 2 and hop == hops // 2:
                target = msg.filename
            if hop == hops:
                break
            ts, mid = new_id(ts + 5 + hop)
            reply = Message(
                mid, consumer, ts, f"answer {run}.{hop}", origin=_extend(msg.origin, msg.filename)
            )
            (base / "outbox" / reply.filename).write_bytes(reply.to_bytes())
            files += 1
            logs[consumer].append(_line("claimed", msg.filename, ts))
            logs[consumer].append(_line("replied", msg.filename, ts, reply=reply.filename))
            msg, consumer = reply, names[first + hop + 1]
    router = home / "router" / "delivered"
    router.mkdir(parents=True)
    for leg, done in delivered.items():
        write(router / f"{leg}.log", "\n".join(done) + "\n")
    today = time.strftime("%Y-%m-%d", time.gmtime())
    for name, lines in logs.items():
        write(home / "agents" / name / "logs" / f"{today}.ndjson", "\n".join(lines) + "\n")
    return target, files


def _extend(origin: str | None, filename: str) -> str:
    return f"{origin}/{filename}" if origin else filename


def _line(event: str, msg: str, ts: int, **extra: str) -> str:
    record = {"ts": str(ts), "level": "info", "event": event, "msg": msg, **extra}
    if event == "replied":
        record["duration_ms"] = 5  # type: ignore[assignment]
    return json.dumps(record)


def timed(cmd: list[str], env: dict[str, str], runs: int) -> tuple[float, str]:
    """Best wall time of `runs` runs, and the last run's stdout."""
    best = float("inf")
    out = ""
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        best = min(best, time.perf_counter() - started)
        if done.returncode not in (0,):
            raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr}")
        out = done.stdout
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--hops", type=int, default=5, help="replies per run (chain length)")
    parser.add_argument("--runs", type=int, default=3, help="runs per trace timing (best of)")
    parser.add_argument("--where", choices=["disk", "tmpfs"], default="disk")
    args = parser.parse_args()
    home = temp_home(args.where)
    env = env_for(home)
    try:
        began = time.perf_counter()
        target, files = generate(home, args.messages, args.agents, args.hops)
        made = time.perf_counter() - began
        print(
            f"home: {args.messages:,} messages ({files:,} files) in {args.agents} agents, "
            f"generated in {made:.1f} s ({args.where})",
            flush=True,
        )
        mid = target.split("-", 1)[1][:-4]
        rows = [["command", "wall", "detail"]]
        t, _ = timed([*LOOM, "trace", "--help"], env, args.runs)
        rows.append(["loom trace --help (start-up)", f"{t:.2f} s", ""])
        t, out = timed([*LOOM, "trace", target], env, args.runs)
        rows.append(["loom trace FILENAME", f"{t:.2f} s", f"{len(out.splitlines())} messages"])
        t, _ = timed([*LOOM, "trace", mid], env, args.runs)
        rows.append(["loom trace ID", f"{t:.2f} s", ""])
        t, _ = timed([*LOOM, "stats"], env, 1)
        rows.append(["loom stats", f"{t:.2f} s", ""])
        config = home / "gc-now.yml"
        write(config, "version: 1\ngc:\n  retention: {processed: 0d, outbox: 0d}\n")
        t, out = timed([*LOOM, "gc", "--config", str(config)], env, 1)
        summary = out.splitlines()[-1]
        handled = int(summary.split()[0])
        rows.append(
            ["loom gc (0d)", f"{t:.2f} s", f"{summary.split(',')[0]}: {handled / t:,.0f} files/s"]
        )
        t, out = timed([*LOOM, "trace", target], env, args.runs)
        rows.append(
            ["loom trace FILENAME, archived", f"{t:.2f} s", f"{len(out.splitlines())} messages"]
        )
        t, out = timed([*LOOM, "gc", "--config", str(config)], env, 1)
        rows.append(["loom gc, nothing to do", f"{t:.2f} s", "no output" if not out else out])
        size = sum(p.stat().st_size for p in (home / "archive").glob("*.gz"))
        rows.append(["archive size", f"{size / 1e6:.1f} MB", ""])
        print(table(rows))
        os.sync()
    finally:
        cleanup(home)


if __name__ == "__main__":
    main()
