"""Benchmark of loom's JMESPath compiler against jmespath's own interpreter.

For each expression (the filter and the map of bench/pipe_foreground.py first, then a
few more kinds of node), evaluates it on the same N request-log events (20,000 by
default) through both, in the same run and in alternating rounds so that load on the
machine hits both alike:
  compiled      loom.pipeline.expressions.compile_expression(text).search(event, msg)
  interpreted   jmespath.compile(text).search(event)   (the library as documented)
Both must give the same results; the report is the median time per evaluation and the
ratio interpreted / compiled (how many times faster the compiler is).

Run:  .venv/bin/python bench/jmespath_compiler.py [--events N] [--rounds R]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jmespath  # noqa: E402
from _common import table  # noqa: E402

from loom.pipeline.expressions import compile_expression  # noqa: E402
from loom.store.message import Message  # noqa: E402

EXPRESSIONS = [
    # bench/pipe_foreground.py's filter and map
    "status >= `500` || latency_ms > `250`",
    "{id: id, service: service, status: status, ms: latency_ms}",
    # more kinds of node
    "service",
    "level == 'error' && !(status < `500`)",
    "contains(['warn', 'error'], level)",
    "tags[?starts_with(@, 'p')]",
    "spans[?ms > `50`].name",
    "length(spans) > `2`",
    "[service, path, user]",
    "spans[*].ms | max(@)",
]


def make_events(count: int) -> list[dict[str, Any]]:
    """`count` request-log events like bench/pipe_foreground.py's, plus a list or two."""
    rng = random.Random(42)
    services = ["api", "auth", "billing", "search", "media"]
    paths = ["/v1/items", "/v1/users/me", "/v1/search", "/healthz", "/v1/upload"]
    events = []
    for i in range(count):
        events.append(
            {
                "id": i,
                "ts": 1_742_860_000_000 + i * 7,
                "service": rng.choice(services),
                "level": rng.choice(["info", "info", "info", "warn", "error"]),
                "status": rng.choice([200, 200, 200, 201, 204, 301, 404, 500, 503]),
                "latency_ms": int(rng.expovariate(1 / 90)),
                "path": rng.choice(paths),
                "user": f"u{rng.randrange(10_000)}",
                "tags": rng.sample(["prod", "eu", "beta", "paid", "canary"], rng.randrange(4)),
                "spans": [
                    {"name": f"s{j}", "ms": int(rng.expovariate(1 / 40))}
                    for j in range(rng.randrange(1, 5))
                ],
            }
        )
    return events


def time_one(run: Callable[[Any], Any], events: list[dict[str, Any]]) -> float:
    """Seconds for one pass of `run` over every event."""
    started = time.perf_counter()
    for event in events:
        run(event)
    return time.perf_counter() - started


def measure(text: str, events: list[dict[str, Any]], rounds: int) -> tuple[float, float]:
    """Median microseconds per evaluation: (compiled, interpreted)."""
    msg = Message("01JBENCH", "bench", 1, "{}")
    expression = compile_expression(text)
    parsed = jmespath.compile(text)

    def compiled(event: Any) -> Any:
        return expression.search(event, msg)

    interpreted = parsed.search
    for event in events[:200]:
        if json.dumps(compiled(event)) != json.dumps(interpreted(event)):
            raise SystemExit(f"{text!r}: compiled and interpreted results differ on {event}")
    mine: list[float] = []
    theirs: list[float] = []
    for _ in range(rounds):
        mine.append(time_one(compiled, events))
        theirs.append(time_one(interpreted, events))
    per = 1e6 / len(events)
    return statistics.median(mine) * per, statistics.median(theirs) * per


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    events = make_events(args.events)
    rows = [["expression", "compiled µs", "jmespath µs", "speed-up"]]
    for text in EXPRESSIONS:
        mine, theirs = measure(text, events, args.rounds)
        rows.append([text, f"{mine:.2f}", f"{theirs:.2f}", f"{theirs / mine:.1f}x"])
    version = jmespath.__version__
    print(f"{args.events:,} events, median of {args.rounds} rounds, jmespath {version}")
    print(table(rows))


if __name__ == "__main__":
    main()
