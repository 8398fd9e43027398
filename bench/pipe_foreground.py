"""Benchmark of `loom pipe run` as a Unix filter, against jq doing the same work.

Two workloads of N generated NDJSON events (200,000 by default):
  requests        `status >= 500 || latency_ms > 250`, four fields projected
  select+project  `select(.level=="error") | {id, msg}`, messages with non-ASCII
                  text and escapes (some lines written with \\uXXXX, some raw)
and for each, timed alternately (median of R runs):
  jq -c '...'                                 the baseline
  loom pipe run FILE                          filter + map, bodies out
  loom pipe run FILE --envelope               the same, full envelopes out
loom's body output must be byte for byte jq's. (They differ on values the bench data
avoids: jq 1.6 prints 1.0 as 1 and 1e-7 as 1e-07, rounds integers past 2^53 and
escapes U+007F; loom keeps Python's JSON text.) Then
the latency of one line written into an idle filter (the `tail -f` case), and,
in-process (no interpreter start-up), the cost of the output flush policy:
flush when the filter would wait (what `loom pipe run` does) against a flush after
every result (what line buffering would cost).

Run:  .venv/bin/python bench/pipe_foreground.py [--events N] [--runs R]
The goal is loom at most 1.5x jq's wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import LOOM, table  # noqa: E402

PIPE = """\
# The benchmark pipe: keep slow or failed requests, project four fields.
- filter: "status >= `500` || latency_ms > `250`"
- map: "{id: id, service: service, status: status, ms: latency_ms}"
"""
JQ = "select(.status >= 500 or .latency_ms > 250) | {id: .id, service: .service, status: .status, ms: .latency_ms}"  # noqa: E501
SELECT_PIPE = """\
# Errors only, with their id and message.
- filter: "level == 'error'"
- map: "{id: id, msg: msg}"
"""
SELECT_JQ = 'select(.level=="error") | {id, msg}'
# Texts with what JSON escapes (quote, backslash, control characters) and what it may
# keep raw (accents, CJK, emoji): jq prints non-ASCII raw, and so must loom.
MESSAGES = [
    "disk full on /var",
    "conexión rechazada",
    "用户未找到",
    "timeout after 30s",
    'quote " and backslash \\ here',
    "tab\there\nnewline",
    "emoji 🚀 launched",
    "control \u0001 character",
    "café ☕ froid",
]


def request_events(count: int) -> Iterator[tuple[dict[str, Any], bool]]:
    """`count` request-log events, each with False: written without escapes (seeded)."""
    rng = random.Random(42)
    services = ["api", "auth", "billing", "search", "media"]
    paths = ["/v1/items", "/v1/users/me", "/v1/search", "/healthz", "/v1/upload"]
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
        yield event, False


def log_events(count: int) -> Iterator[tuple[dict[str, Any], bool]]:
    """`count` log events with id, level, msg and others, each with whether to write it
    ASCII only (a third are, with \\uXXXX escapes, as many producers do; seeded)."""
    rng = random.Random(7)
    levels = ["debug", "info", "info", "warn", "error"]
    for i in range(count):
        event = {
            "id": i,
            "ts": 1_742_860_000_000 + i * 7,
            "level": rng.choice(levels),
            "msg": rng.choice(MESSAGES),
            "host": f"web-{rng.randrange(20)}",
            "took_s": round(rng.random() * 3, 3),
            "tags": ["db", "retry"][: rng.randrange(3)],
            "ok": rng.random() < 0.5,
        }
        yield event, rng.random() < 0.3


def write_events(path: Path, events: Iterator[tuple[dict[str, Any], bool]]) -> None:
    """One compact JSON object per line."""
    with path.open("w", encoding="utf-8") as out:
        for event, ascii_only in events:
            out.write(json.dumps(event, ensure_ascii=ascii_only, separators=(",", ":")) + "\n")


def timed(cmd: list[str], stdin: Path, stdout: Path, env: dict[str, str]) -> float:
    """Wall time of one run of `cmd` with stdin from a file and stdout to a file."""
    with stdin.open("rb") as src, stdout.open("wb") as dst:
        started = time.perf_counter()
        subprocess.run(cmd, stdin=src, stdout=dst, env=env, check=True)
        return time.perf_counter() - started


def same_bytes(a: Path, b: Path) -> bool:
    """Whether two outputs are byte for byte the same."""
    return a.read_bytes() == b.read_bytes()


def compare(
    name: str, pipe: Path, jq_program: str, events: Path, runs: int, env: dict[str, str]
) -> None:
    """Time jq and loom alternately on `events`; print medians, ratios and the byte check."""
    jq = shutil.which("jq")
    commands: list[tuple[str, list[str]]] = []
    if jq:
        commands.append(("jq -c (baseline)", [jq, "-c", jq_program]))
    commands.append(("loom pipe run", [*LOOM, "pipe", "run", str(pipe)]))
    commands.append(("loom pipe run --envelope", [*LOOM, "pipe", "run", str(pipe), "--envelope"]))
    times: dict[str, list[float]] = {label: [] for label, _ in commands}
    outputs = {label: events.with_name(f"{name}-out-{i}") for i, (label, _) in enumerate(commands)}
    for _ in range(runs):
        # Alternating runs share whatever else the machine is doing at the time.
        for label, cmd in commands:
            times[label].append(timed(cmd, events, outputs[label], env))
    kept = sum(1 for _ in outputs["loom pipe run"].open("rb"))
    size_mb = events.stat().st_size / 1e6
    count = sum(1 for _ in events.open("rb"))
    print(f"{name}: {count:,} events ({size_mb:.1f} MB), {kept:,} kept; median of {runs}\n")
    medians = {label: statistics.median(values) for label, values in times.items()}
    base = medians.get("jq -c (baseline)")
    rows = [["command", "wall", "events/s", "vs jq"]]
    for label, seconds in medians.items():
        ratio = f"{seconds / base:.2f}x" if base else "-"
        rows.append([label, f"{seconds:.2f} s", f"{count / seconds:,.0f}", ratio])
    print(table(rows))
    if base:
        same = same_bytes(outputs["jq -c (baseline)"], outputs["loom pipe run"])
        print(f"\nloom and jq outputs byte-identical: {'yes' if same else 'NO'}\n")
    else:
        print("\njq not found: no baseline\n")


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
    parser.add_argument("--runs", type=int, default=5, help="runs per command (median kept)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="loom-bench-pipe-"))
    env = dict(os.environ)
    env["LOOM_HOME"] = str(work / "home")
    try:
        events = work / "events.ndjson"
        pipe = work / "slow-requests.yml"
        pipe.write_text(PIPE, encoding="utf-8")
        write_events(events, request_events(args.events))
        compare("requests", pipe, JQ, events, args.runs, env)
        log_file = work / "log.ndjson"
        select_pipe = work / "errors.yml"
        select_pipe.write_text(SELECT_PIPE, encoding="utf-8")
        write_events(log_file, log_events(args.events))
        compare("select+project", select_pipe, SELECT_JQ, log_file, args.runs, env)
        empty = work / "empty"
        empty.touch()
        startup = statistics.median(
            timed([*LOOM, "pipe", "run", str(pipe)], empty, work / "none", env)
            for _ in range(args.runs)
        )
        print(f"loom start-up (empty input): {startup:.2f} s")
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
