"""Calls in flight: an agent's throughput on a slow model, against the ideal N / latency.

Run:  .venv/bin/python bench/concurrency.py                 (all sections, ~2 minutes)
      .venv/bin/python bench/concurrency.py --latency 0.5   (a faster model)
      .venv/bin/python bench/concurrency.py storm bulk      (some sections)

Sections:
  inflight  messages through the test suite's fake OpenAI server, every call taking
            --latency seconds, at concurrency 1, 4, 16 and 64 (a detached agent, timed
            from the first message sent to the last reply written): messages/s, the share
            of the ideal N / latency, the runner's CPU per message, its peak RSS.
  storm     the server answers 429 with Retry-After: 1 to every other call, concurrency
            16: calls made against the fewest possible, and whether every message was
            answered once.
  bulk      `loom send --lines` of 10,000 lines against 200 `loom send` processes
            (extrapolated to 10,000), both measured in this run.
The ideal and the fewest calls follow from the settings; everything else is measured.
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
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _common import (  # noqa: E402
    LOOM,
    cleanup,
    cpu_seconds,
    env_for,
    send_messages,
    start_agent,
    table,
    temp_home,
)
from llm_server import LLMServer, Slow, Status  # noqa: E402

LEVELS = (1, 4, 16, 64)


def _stop(env: dict[str, str]) -> None:
    subprocess.run([*LOOM, "agent", "stop", "a"], env=env, capture_output=True)
    pid = Path(env["LOOM_HOME"]) / "supervisor.pid"
    if pid.exists() and pid.read_text().strip():
        os.kill(int(pid.read_text()), signal.SIGTERM)


def _replies(home: Path) -> int:
    return sum(1 for p in (home / "agents" / "a" / "outbox").glob("*.msg"))


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _run(concurrency: int, count: int, latency: float, storm: bool = False) -> dict[str, float]:
    home = temp_home("tmpfs")
    with LLMServer() as server:
        if storm:
            # Every other call is refused once; the fewest calls is two per message.
            server.script(
                *[b for _ in range(count) for b in (Status(429, retry_after=1), Slow(latency))]
            )
        else:
            server.script(*[Slow(latency)] * count)
        env = {**env_for(home), **server.env(), "OPENAI_API_KEY": "sk-bench"}
        env["LOOM_RETRIES"] = "10"
        try:
            start_agent(env, concurrency)
            pid = int((home / "agents" / "a" / "pid").read_text())
            cpu = cpu_seconds(pid)
            started = time.perf_counter()
            send_messages(home / "agents" / "a" / "inbox", count)
            deadline = started + count * latency * 2 + 120
            while _replies(home) < count and time.perf_counter() < deadline:
                time.sleep(0.02)
            elapsed = time.perf_counter() - started
            result = {
                "replies": _replies(home),
                "seconds": elapsed,
                "cpu_ms": (cpu_seconds(pid) - cpu) * 1000 / count,
                "rss": _peak_rss_mib(pid),
                "calls": len(server.requests),
                "max_open": server.max_open,
            }
        finally:
            _stop(env)
            cleanup(home)
    return result


def inflight(count: int, latency: float) -> list[list[str]]:
    rows = [
        [
            "concurrency",
            "messages",
            "msg/s",
            "ideal msg/s",
            "of ideal",
            "CPU/msg",
            "peak RSS",
            "max open",
        ]
    ]
    for level in LEVELS:
        n = min(count, max(10, level * 5)) if level == 1 else count
        r = _run(level, n, latency)
        rate = r["replies"] / r["seconds"]
        ideal = min(level, n) / latency
        rows.append(
            [
                str(level),
                f"{int(r['replies'])}/{n}",
                f"{rate:.1f}",
                f"{ideal:.1f}",
                f"{rate / ideal:.0%}",
                f"{r['cpu_ms']:.2f} ms",
                f"{r['rss']:.1f} MiB",
                str(int(r["max_open"])),
            ]
        )
    return rows


def storm(count: int, latency: float) -> list[list[str]]:
    r = _run(16, count, latency, storm=True)
    return [
        ["429 storm, concurrency 16", "value"],
        ["messages answered", f"{int(r['replies'])}/{count}"],
        ["calls made", str(int(r["calls"]))],
        ["fewest possible (one 429 and one answer each)", str(2 * count)],
        ["seconds", f"{r['seconds']:.1f}"],
    ]


def bulk(lines: int, processes: int) -> list[list[str]]:
    home = temp_home("tmpfs")
    env = env_for(home)
    try:
        text = "".join(f"line {i}\n" for i in range(lines)).encode()
        started = time.perf_counter()
        subprocess.run(
            [*LOOM, "send", "bulk", "--create", "--lines"],
            input=text,
            env=env,
            check=False,
            capture_output=True,
        )
        one = time.perf_counter() - started
        sent_bulk = sum(1 for _ in (home / "agents" / "bulk" / "inbox").glob("*.msg"))
        started = time.perf_counter()
        for i in range(processes):
            subprocess.run(
                [*LOOM, "send", "each", "--create", f"line {i}"],
                env=env,
                check=False,
                capture_output=True,
            )
        each = (time.perf_counter() - started) / processes
    finally:
        cleanup(home)
    return [
        ["bulk input", "value"],
        [f"send --lines, {lines} lines, one process", f"{one:.2f} s ({sent_bulk} delivered)"],
        [f"loom send x {processes} processes, per message", f"{each * 1000:.0f} ms"],
        [f"loom send x {lines} (extrapolated)", f"{each * lines:.0f} s"],
        ["ratio", f"{each * lines / one:.0f}x faster in one process"],
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sections", nargs="*", default=["inflight", "storm", "bulk"])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--latency", type=float, default=1.0)
    args = parser.parse_args()
    for section in args.sections:
        if section == "inflight":
            rows = inflight(args.messages, args.latency)
        elif section == "storm":
            rows = storm(args.messages, args.latency)
        elif section == "bulk":
            rows = bulk(10_000, 200)
        else:
            parser.error(f"unknown section {section!r}")
        print(table(rows), end="\n\n", flush=True)
    print(json.dumps({"latency_s": args.latency, "messages": args.messages}))


if __name__ == "__main__":
    main()
