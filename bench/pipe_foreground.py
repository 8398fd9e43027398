"""Benchmark of `loom pipe run` as a Unix filter, against jq doing the same work.

Generates N NDJSON events (200,000 by default), then times, in the same run:
  jq -c 'select(...) | {...}'                 the baseline
  loom pipe run FILE                          filter + map, bodies out
  loom pipe run FILE --envelope               the same, full envelopes out
the latency of one line written into an idle filter (the `tail -f` case), and,
in-process (no interpreter start-up), the cost of the output flush policy:
flush when the filter would wait (what `loom pipe run` does) against a flush after
every result (what line buffering would cost).

Run:  .venv/bin/python bench/pipe_foreground.py [--events N] [--runs R]
The goal is loom at most 2x jq's wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import LOOM, table  # noqa: E402

PIPE = """\
# The benchmark pipe: keep slow or failed requests, project four fields.
- filter: "status >= `500` || latency_ms > `250`"
- map: "{id: id, service: service, status: status, ms: latency_ms}"
"""
JQ = "select(.status >= 500 or .latency_ms > 250) | {id: .id, service: .service, status: .status, ms: .latency_ms}"  # noqa: E501


def make_events(path: Path, count: int) -> None:
    """Write `count` request-log events, one JSON object per line (seeded: reproducible)."""
    rng = random.Random(42)
    services = ["api", "auth", "billing", "search", "media"]
    paths = ["/v1/items", "/v1/users/me", "/v1/search", "/healthz", "/v1/upload"]
    with path.open("w", encoding="utf-8") as out:
        for i in range(count):
            event = {
                "id": i,
                "ts": 1_742_860_000_000 + i * 7,
                "service": rng.choice(services),
                "level": rng.choice(["info", "info", "info", "warn", "error"]),
                "status": rng.choice([200, 200, 200, 201, 204, 301, 404, 500, 503]),
                "latency_ms": int(rng.expovariate(1 / 90)),
                "path": rng.choice(paths),
                "user": f"u{rng.randrange(10_000)}",
            }
            out.write(json.dumps(event, separators=(",", ":")) + "\n")


def timed(cmd: list[str], stdin: Path, stdout: Path, env: dict[str, str]) -> float:
    """Wall time of one run of `cmd` with stdin from a file and stdout to a file."""
    with stdin.open("rb") as src, stdout.open("wb") as dst:
        started = time.perf_counter()
        subprocess.run(cmd, stdin=src, stdout=dst, env=env, check=True)
        return time.perf_counter() - started


def same_results(a: Path, b: Path) -> bool:
    """Whether two NDJSON outputs hold the same values in the same order."""
    with a.open("rb") as fa, b.open("rb") as fb:
        left = [json.loads(line) for line in fa]
        right = [json.loads(line) for line in fb]
    return left == right


def flush_policies(pipe: Path, events: Path, runs: int) -> list[tuple[str, float, int]]:
    """In-process times of the two output flush policies, writing into a shell pipe."""
    from loom.pipeline import pipe_run

    results = []
    for label, each in (("flush when waiting (default)", False), ("flush every result", True)):
        best = float("inf")
        count = 0
        for _ in range(runs):
            reader = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
            assert reader.stdin is not None
            with events.open("rb") as src, reader.stdin as sink:
                options = pipe_run.FilterOptions(flush_each=each)
                started = time.perf_counter()
                runner = pipe_run.run(str(pipe), options, source=src, sink=sink, errors=sys.stderr)
                best = min(best, time.perf_counter() - started)
                count = runner.output.count
            reader.wait()
        results.append((label, best, count))
    return results


def trickle_latency(pipe: Path, env: dict[str, str], lines: int = 50) -> list[float]:
    """Seconds from writing one line into an open stdin to reading its result (tail -f)."""
    proc = subprocess.Popen(
        [*LOOM, "pipe", "run", str(pipe)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None
    event = json.dumps({"id": 1, "service": "api", "status": 503, "latency_ms": 9})
    times = []
    try:
        # The first line also pays for start-up; it is not counted.
        for _ in range(lines + 1):
            started = time.perf_counter()
            proc.stdin.write(event.encode() + b"\n")
            proc.stdin.flush()
            proc.stdout.readline()
            times.append(time.perf_counter() - started)
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    return times[1:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000, help="events to generate")
    parser.add_argument("--runs", type=int, default=3, help="runs per command (best is kept)")
    args = parser.parse_args()
    jq = shutil.which("jq")
    work = Path(tempfile.mkdtemp(prefix="loom-bench-pipe-"))
    env = dict(os.environ)
    env["LOOM_HOME"] = str(work / "home")
    try:
        events = work / "events.ndjson"
        pipe = work / "slow-requests.yml"
        pipe.write_text(PIPE, encoding="utf-8")
        make_events(events, args.events)
        size_mb = events.stat().st_size / 1e6
        commands: list[tuple[str, list[str]]] = []
        if jq:
            commands.append(("jq -c (baseline)", [jq, "-c", JQ]))
        commands.append(("loom pipe run", [*LOOM, "pipe", "run", str(pipe)]))
        commands.append(
            ("loom pipe run --envelope", [*LOOM, "pipe", "run", str(pipe), "--envelope"])
        )
        best: dict[str, float] = {}
        outputs: dict[str, Path] = {}
        for label, cmd in commands:
            outputs[label] = work / f"out-{len(outputs)}.ndjson"
            best[label] = min(timed(cmd, events, outputs[label], env) for _ in range(args.runs))
        empty = work / "empty"
        empty.touch()
        startup = min(
            timed([*LOOM, "pipe", "run", str(pipe)], empty, work / "none", env)
            for _ in range(args.runs)
        )
        kept = sum(1 for _ in outputs["loom pipe run"].open("rb"))
        print(f"{args.events:,} events ({size_mb:.1f} MB), {kept:,} kept; best of {args.runs}\n")
        base = best.get("jq -c (baseline)")
        rows = [["command", "wall", "events/s", "vs jq"]]
        for label, seconds in best.items():
            ratio = f"{seconds / base:.2f}x" if base else "-"
            rows.append([label, f"{seconds:.2f} s", f"{args.events / seconds:,.0f}", ratio])
        rows.append(["loom start-up (empty input)", f"{startup:.2f} s", "-", "-"])
        print(table(rows))
        if base:
            same = same_results(outputs["jq -c (baseline)"], outputs["loom pipe run"])
            print(f"\nloom and jq outputs identical: {'yes' if same else 'NO'}")
        else:
            print("\njq not found: no baseline")
        latencies = sorted(trickle_latency(pipe, env))
        median = latencies[len(latencies) // 2] * 1000
        worst = latencies[-1] * 1000
        print(
            f"\nOne line into an idle `loom pipe run`, result out: median {median:.1f} ms, "
            f"max {worst:.1f} ms ({len(latencies)} lines)"
        )
        print("\nOutput flush policy (in-process, into `| cat >/dev/null`):\n")
        rows = [["policy", "wall", "results"]]
        for label, seconds, count in flush_policies(pipe, events, args.runs):
            rows.append([label, f"{seconds:.2f} s", f"{count:,}"])
        print(table(rows))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
