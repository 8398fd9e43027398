"""CPU per model call, in one process: `provider.complete` in a loop, nothing else.

Run:  .venv/bin/python bench/call_cpu.py --base /tmp/callpath-base     (~1 minute)
      .venv/bin/python bench/call_cpu.py --words 300 --calls 200 --base /tmp/callpath-base

`--words N` makes the prompt N words long; the server streams its echo one event per
word (plus the opening, closing and usage events), so a long answer shows the cost of
each stream event.

The OpenAI provider calls the test suite's fake server (tests/llm_server.py, an instant
streamed echo of six SSE events, in a process of its own) `--calls` times after 50 calls
of warm-up; CPU is this process's user + system time over the loop, so it is the call
path alone: building the request, the HTTP exchange, reading and parsing the stream.
The server's own CPU per request is shown beside it, and so are the user and system
parts of the CPU and the receives per call (a reader that is done sooner goes back to
the socket sooner, and against an instant server finds fewer events waiting each time).
`--base` is a checkout of loom to compare with, run by this interpreter with PYTHONPATH
set to it; rounds alternate.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def measure(calls: int, words: int = 2) -> dict[str, float]:
    """One round in this process (loom as found on sys.path)."""
    from loom.providers import resolve
    from loom.providers.base import Request, Turn

    server = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "llm_server.py"), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    try:
        url = server.stdout.readline().split()[-1]
        env = {"OPENAI_API_KEY": "sk-bench", "OPENAI_BASE_URL": f"{url}/v1"}
        provider, model = resolve("openai/bench", env)
        # The server echoes the prompt as one stream event per word.
        prompt = "message 1" if words <= 2 else " ".join(f"word{i}" for i in range(words))
        request = Request(model, (Turn("user", prompt),))
        for _ in range(50):
            provider.complete(request, lambda text: None)
        receives = _count_receives()
        server_cpu = _cpu(server.pid)
        used, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        for _ in range(calls):
            provider.complete(request, lambda text: None)
        after, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - wall
        server_cpu = _cpu(server.pid) - server_cpu
    finally:
        server.terminate()
        server.wait()
        server.stdout.close()
    user, system = after.ru_utime - used.ru_utime, after.ru_stime - used.ru_stime
    return {
        "cpu_ms": (user + system) * 1000 / calls,
        "user_ms": user * 1000 / calls,
        "system_ms": system * 1000 / calls,
        "receives": receives[0] / calls if receives else -1.0,
        "wall_ms": wall * 1000 / calls,
        "server_ms": server_cpu * 1000 / calls,
    }


def _count_receives() -> list[int]:
    """Count the receives of loom's HTTP connections from now on: [count], or [] for a
    loom without its own transport (`--base` of an older checkout)."""
    try:
        from loom.providers.transport import Connection
    except ImportError:
        return []
    receive = getattr(Connection, "_recv", None)
    if receive is None:
        return []
    counted = [0]

    def counting(self: Connection, timeout: float | None) -> bytes:
        counted[0] += 1
        data: bytes = receive(self, timeout)
        return data

    Connection._recv = counting  # type: ignore[method-assign]
    return counted


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def round_of(base: Path | None, calls: int, words: int) -> dict[str, float]:
    """One round in a fresh interpreter, of this checkout or of `base`."""
    path = str(base) if base is not None else str(ROOT)
    out = subprocess.run(
        [sys.executable, __file__, "--round", str(calls), "--words", str(words)],
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
    )
    figures: dict[str, float] = json.loads(out.stdout)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--base", type=Path, help="a loom checkout to compare with")
    parser.add_argument(
        "--words", type=int, default=2, help="words of the prompt: stream events per answer"
    )
    parser.add_argument("--round", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.round is not None:
        print(json.dumps(measure(args.round, args.words)))
        return
    sides: dict[str, Path | None] = {"after": None}
    if args.base is not None:
        sides = {"before": args.base, **sides}
    runs: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
    for index in range(args.rounds):
        order = list(sides) if index % 2 == 0 else list(reversed(sides))
        for side in order:
            runs[side].append(round_of(sides[side], args.calls, args.words))
    print("side    CPU per call  user      system    receives  wall per call  server CPU")
    medians = {}
    for side, figures in runs.items():
        m = {k: statistics.median(f[k] for f in figures) for k in figures[0]}
        medians[side] = m
        receives = f"{m['receives']:.1f}" if m["receives"] >= 0 else "-"
        print(
            f"{side:<7} {m['cpu_ms']:.3f} ms      {m['user_ms']:.3f} ms  {m['system_ms']:.3f} ms  "
            f"{receives:<9} {m['wall_ms']:.3f} ms       {m['server_ms']:.3f} ms"
        )
    if "before" in medians:
        ratio = medians["after"]["cpu_ms"] / medians["before"]["cpu_ms"]
        print(f"after/before CPU per call: {ratio:.2f}x")
    summary = {"calls": args.calls, "words": args.words, "rounds": args.rounds}
    print(json.dumps({**summary, "medians": medians}))


if __name__ == "__main__":
    main()
