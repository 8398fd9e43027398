"""Benchmarks of a queued pipe process (`loom pipe start`): throughput and hop latency.

Run:  .venv/bin/python bench/pipe_queued.py [--messages 2000] [--samples 200]
Sections: map+filter+dedupe throughput and latency; `command: cat` per message and
with the streaming command mode. LOOM_HOME is on tmpfs with fsync off (and on, for the
first figure). The original loom at 358588f has no command that runs a pipe (its README
lists pipes as planned), so there is no baseline here and its column says so.
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
    table,
    temp_home,
)
from original import NOT_MEASURED  # noqa: E402

from loom.store.message import new_message  # noqa: E402

PIPES = {
    "map+filter+dedupe": [
        {"filter": "level != 'debug'"},
        {"map": "{id: id, level: level, text: text}"},
        {"dedupe": {"key": "id"}},
    ],
    "command: cat": [{"command": "cat"}],
    "command: cat (stream)": [{"command": "cat", "stream": True}],
}


def _start(home: Path, pipe: str, fsync: bool) -> subprocess.Popen[bytes]:
    definition = home / f"{pipe.replace(' ', '').replace(':', '-')}.json"
    definition.write_text(json.dumps(PIPES[pipe]))
    proc = subprocess.Popen(
        [*LOOM, "pipe", "start", str(definition), "--instance", "bench"],
        env=env_for(home, fsync),
        stdout=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    status = home / "pipes/bench/status"
    while not status.exists() or status.read_text().strip() != "idle":
        time.sleep(0.005)
    return proc


def _body(i: int) -> str:
    return json.dumps({"id": i, "level": "info", "text": f"event {i}", "extra": "x" * 40})


def throughput(pipe: str, count: int, fsync: bool = False) -> float:
    """Messages per second from the inbox to the outbox."""
    home = temp_home("tmpfs")
    try:
        proc = _start(home, pipe, fsync)
        inbox, outbox = home / "pipes/bench/inbox", home / "pipes/bench/outbox"
        staging = home / "staging"
        staging.mkdir()
        names = []
        for i in range(count):
            msg = new_message("bench", _body(i))
            (staging / msg.filename).write_bytes(msg.to_bytes())
            names.append(msg.filename)
        started = time.perf_counter()
        for name in names:
            os.rename(staging / name, inbox / name)
        while len(os.listdir(outbox)) < count:
            time.sleep(0.002)
        elapsed = time.perf_counter() - started
        proc.terminate()
        proc.wait(10)
    finally:
        cleanup(home)
    return count / elapsed


def latency(pipe: str, samples: int) -> tuple[float, float]:
    """Median and p90 ms from a message renamed into the inbox to its result in the outbox."""
    home = temp_home("tmpfs")
    try:
        proc = _start(home, pipe, False)
        inbox, outbox = home / "pipes/bench/inbox", home / "pipes/bench/outbox"
        results = hop_latencies(inbox, outbox, samples, _body)
        proc.terminate()
        proc.wait(10)
    finally:
        cleanup(home)
    return percentile(results, 50), percentile(results, 90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    n = args.messages
    rows = [["measure", "loom", "original", "goal"]]
    rows.append(
        [
            f"map+filter+dedupe, {n} msgs, fsync off",
            f"{throughput('map+filter+dedupe', n):.0f} msg/s",
            NOT_MEASURED,
            ">= 3000 msg/s",
        ]
    )
    rows.append(
        [
            f"map+filter+dedupe, {n} msgs, fsync on",
            f"{throughput('map+filter+dedupe', n, fsync=True):.0f} msg/s",
            NOT_MEASURED,
            "-",
        ]
    )
    p50, p90 = latency("map+filter+dedupe", args.samples)
    rows.append(
        [
            "map+filter+dedupe hop latency",
            f"median {p50:.2f} ms, p90 {p90:.2f} ms",
            NOT_MEASURED,
            "median < 5 ms",
        ]
    )
    per = throughput("command: cat", max(n // 4, 100))
    stream = throughput("command: cat (stream)", n)
    rows.append(["command: cat, per message", f"{per:.0f} msg/s", NOT_MEASURED, "-"])
    rows.append(
        [
            "command: cat, streaming",
            f"{stream:.0f} msg/s ({stream / per:.1f}x)",
            NOT_MEASURED,
            ">= 10x per message",
        ]
    )
    print(table(rows))


if __name__ == "__main__":
    main()
