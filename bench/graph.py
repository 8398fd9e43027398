"""Benchmarks of a weave: agent → pipe → agent with the echo model, under the supervisor.

Run:  .venv/bin/python bench/graph.py [--samples 200] [--messages 2000]
Measures the end-to-end latency of one message through the three hops (median, p99)
and the throughput of the graph for a burst of messages. LOOM_HOME on tmpfs, fsync off.
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

from _common import (  # noqa: E402
    LOOM,
    cleanup,
    env_for,
    hop_latencies,
    percentile,
    stop_home,
    table,
    temp_home,
)

from loom.store.message import new_message  # noqa: E402

WEAVE = """\
version: 1
pipes:
  tag:
    - map: "{n: n, tagged: `true`}"
agents:
  - {name: first, model: echo}
  - name: last
    model: echo
    from: [{agent: first, pipe: tag}]
"""


def _up(home: Path) -> dict[str, str]:
    env = env_for(home)
    (home / "loom.yml").write_text(WEAVE)
    subprocess.run(
        [*LOOM, "up", "-d", "--config", str(home / "loom.yml")],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return env


def _down(home: Path, env: dict[str, str]) -> None:
    subprocess.run(
        [*LOOM, "down", "--config", str(home / "loom.yml")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stop_home(home)


def latency(samples: int) -> tuple[float, float]:
    home = temp_home("tmpfs")
    try:
        _up(home)
        inbox = home / "agents/first/inbox"
        outbox = home / "agents/last/outbox"
        time.sleep(0.5)
        results = hop_latencies(inbox, outbox, samples, lambda i: json.dumps({"n": i}))
    finally:
        _down(home, env_for(home))
        cleanup(home)
    return percentile(results, 50), percentile(results, 99)


def throughput(count: int) -> float:
    home = temp_home("tmpfs")
    try:
        _up(home)
        inbox = home / "agents/first/inbox"
        outbox = home / "agents/last/outbox"
        staging = home / "staging"
        staging.mkdir()
        names = []
        for i in range(count):
            msg = new_message("bench", json.dumps({"n": i}))
            (staging / msg.filename).write_bytes(msg.to_bytes())
            names.append(msg.filename)
        time.sleep(0.5)
        started = time.perf_counter()
        for name in names:
            os.rename(staging / name, inbox / name)
        while not outbox.is_dir() or len(os.listdir(outbox)) < count:
            time.sleep(0.005)
        elapsed = time.perf_counter() - started
    finally:
        _down(home, env_for(home))
        cleanup(home)
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args()
    p50, p99 = latency(args.samples)
    rate = throughput(args.messages)
    print(
        table(
            [
                ["measure", "loom", "goal"],
                ["agent → pipe → agent latency, median", f"{p50:.1f} ms", "< 50 ms"],
                ["agent → pipe → agent latency, p99", f"{p99:.1f} ms", "-"],
                [f"throughput, burst of {args.messages}", f"{rate:.0f} msg/s", ">= 500 msg/s"],
            ]
        )
    )


if __name__ == "__main__":
    main()
