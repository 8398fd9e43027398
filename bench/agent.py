"""Benchmarks of agents, loom against the original loom measured in the same run.

Run:  .venv/bin/python bench/agent.py                 (all sections, several minutes)
      .venv/bin/python bench/agent.py startup --runs 20
      .venv/bin/python bench/agent.py drain --rounds 3 --original /tmp/loom-original
Sections: startup (CLI commands), drain (echo agent on a full inbox: 1,000 and 5,000 on
tmpfs, 1,000 on disk with loom's default fsync on), latency (one message at a time, idle
gaps between samples), rss (an idle runner). Each measure alternates loom and the original
run for run, and reports medians and loom's factor against the original (> 1x: loom is
better). Where the original was not run, its column says "not measured" (see
bench/original.py for how to get it).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import original as orig  # noqa: E402
from _common import LOOM, ROOT, cleanup, env_for, percentile, stop_home, table, temp_home  # noqa: E402

from loom.store.message import new_message  # noqa: E402

Row = list[str]
MessageFile = Callable[[int, str], tuple[str, bytes]]


def _loom_file(i: int, body: str) -> tuple[str, bytes]:
    msg = new_message("bench", body)
    return msg.filename, msg.to_bytes()


class Side:
    """How one implementation is run: its CLI, its message files, its echo runner."""

    def __init__(self, name: str, cli: Callable[..., list[str]], message: MessageFile) -> None:
        self.name, self.cli, self.message = name, cli, message

    def runner(self) -> list[str]:
        if self.name == "loom":
            return self.cli("agent", "start", "a", "--model", "echo")
        return self.cli("agent", "start", "a", "--model", "echo/a")


def _sides(original: orig.Original | None) -> tuple[Side, Side | None]:
    loom = Side("loom", lambda *a: [*LOOM, *a], _loom_file)
    if original is None:
        return loom, None
    return loom, Side("original", original.cli, orig.message_file)


def _timed(cmd: list[str], env: dict[str, str], stdin: bytes = b"") -> float:
    started = time.perf_counter()
    subprocess.run(cmd, input=stdin, stdout=subprocess.DEVNULL, env=env, check=True)
    return (time.perf_counter() - started) * 1000


def _fmt(values: list[float] | None, unit: str, digits: int = 0) -> str:
    if not values:
        return orig.NOT_MEASURED
    return f"{orig.median(values):,.{digits}f} {unit}"


def _row(label: str, res: dict[str, list[float]], unit: str, higher: bool, digits: int = 0) -> Row:
    loom, other = res["loom"], res.get("original")
    factor = orig.ratio(
        orig.median(loom), orig.median(other) if other else None, higher_is_better=higher
    )
    return [label, _fmt(loom, unit, digits), _fmt(other, unit, digits), factor]


AGENTS = ("a", "b", "c", "d", "e")


def _wait_running(loom: Side, env: dict[str, str], count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run(
            loom.cli("agent", "ps"), env=env, capture_output=True, text=True, check=True
        ).stdout
        if sum(line.split()[1:2] in (["running"], ["idle"]) for line in out.splitlines()) >= count:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"the bench agents did not all start:\n{out}")
        time.sleep(0.05)


def startup(loom: Side, original: Side | None, runs: int) -> list[Row]:
    """Wall time of whole CLI commands, loom and the original taking turns, run for run."""
    # An installed loom has its bytecode compiled; without it (PYTHONDONTWRITEBYTECODE),
    # every run would compile loom's modules again.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "loom")], check=True)
    home = temp_home("tmpfs")
    env = env_for(home)
    try:
        # `agent ps` lists five running agents; `send` goes to the first of them.
        for name in AGENTS:
            subprocess.run(
                loom.cli("agent", "start", name, "--model", "echo", "--detach"),
                env=env,
                check=True,
                capture_output=True,
            )
        _wait_running(loom, env, len(AGENTS))
        commands = [
            ("--help", ["--help"], b""),
            ("send a hello", ["send", "a", "hello"], b""),
            ("agent ps", ["agent", "ps"], b""),
        ]
        rows = []
        for label, args, stdin in commands:
            res = orig.alternate(
                runs,
                loom=lambda a=args, s=stdin: _timed(loom.cli(*a), env, s),
                original=(
                    None
                    if original is None
                    else lambda a=args, s=stdin: _timed(original.cli(*a), env, s)
                ),
            )
            rows.append(_row(f"`loom {label}`, median of {runs}", res, "ms", higher=False))
        stdin_cmd = {
            "loom": loom.cli("agent", "start", "s", "--model", "echo", "--stdin"),
            "original": original.cli("agent", "start", "s", "--model", "echo/s", "--stdin")
            if original
            else [],
        }
        res = orig.alternate(
            runs,
            loom=lambda: _timed(stdin_cmd["loom"], env, b"hi\n"),
            original=(
                None if original is None else lambda: _timed(stdin_cmd["original"], env, b"hi\n")
            ),
        )
        label = f"`echo hi | loom agent start --stdin`, median of {runs}"
        rows.append(_row(label, res, "ms", higher=False))
    finally:
        stop_home(home)
        cleanup(home)
    return rows


def _one_drain(side: Side, count: int, where: str, fsync: bool) -> orig.Drain:
    home = temp_home(where)
    try:
        inbox = home / "agents" / "a" / "inbox"
        inbox.mkdir(parents=True)
        for i in range(count):
            name, data = side.message(i, f"message {i}")
            (inbox / name).write_bytes(data)
        os.sync()
        return orig.time_drain(side.runner(), env_for(home, fsync), home / "agents/a/outbox", count)
    finally:
        cleanup(home)


def drain(loom: Side, original: Side | None, count: int, where: str, rounds: int) -> list[Row]:
    """Messages per second of an echo agent answering a pre-placed inbox, two ways timed."""
    fsync = where == "disk"  # loom's default; the original never fsyncs
    drains: dict[str, list[orig.Drain]] = {"loom": [], "original": []}
    orig.alternate(
        rounds,
        loom=lambda: drains["loom"].append(_one_drain(loom, count, where, fsync)) or 0.0,
        original=(
            None
            if original is None
            else lambda: drains["original"].append(_one_drain(original, count, where, fsync)) or 0.0
        ),
    )
    what = f"drain {count:,}, {where}" + (", loom fsync on (original: never)" if fsync else "")
    rows = []
    for timed, attr in [("from runner start", "rate_start"), ("from first reply", "rate_first")]:
        res = {k: [getattr(d, attr) for d in v] for k, v in drains.items() if v}
        rows.append(_row(f"{what}, {timed}, median of {rounds}", res, "msg/s", higher=True))
    return rows


def _latencies(side: Side, samples: int, gap: float) -> list[float]:
    """ms from a message renamed into an idle runner's inbox to its reply in the outbox."""
    from loom.store.watch import watcher

    home = temp_home("tmpfs")
    inbox, outbox = home / "agents/a/inbox", home / "agents/a/outbox"
    inbox.mkdir(parents=True)
    outbox.mkdir(parents=True)
    proc = subprocess.Popen(
        side.runner(), env=env_for(home), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
    )
    watch = watcher([outbox])
    results = []
    try:
        name, data = side.message(-1, "warm up")
        (inbox / name).write_bytes(data)
        deadline = time.monotonic() + 30
        while orig.count_messages(outbox) < 1:
            if time.monotonic() > deadline:
                raise SystemExit(f"{side.name}: no reply to the warm-up message")
            watch.wait(0.5)
        rng = random.Random(14)
        for i in range(samples):
            # An idle gap, uneven so that samples do not lock onto a polling period.
            time.sleep(gap * (0.5 + rng.random()))
            name, data = side.message(i, f"ping {i}")
            tmp = home / f".tmp-{i}"
            tmp.write_bytes(data)
            before = orig.count_messages(outbox)
            started = time.perf_counter()
            os.rename(tmp, inbox / name)
            while orig.count_messages(outbox) == before:
                watch.wait(1.0)
            results.append((time.perf_counter() - started) * 1000)
    finally:
        watch.close()
        orig.stop(proc)
        cleanup(home)
    return results


def latency(loom: Side, original: Side | None, samples: int, gap: float) -> list[Row]:
    res = {"loom": _latencies(loom, samples, gap)}
    if original is not None:
        res["original"] = _latencies(original, samples, gap)
    label = f"inbox -> outbox, {samples} samples, idle gaps ~{gap * 1000:.0f} ms"
    rows = []
    for name, q in [("median", 50), ("p90", 90)]:
        pct = {k: [percentile(v, q)] for k, v in res.items()}
        rows.append(_row(f"{label}, {name}", pct, "ms", higher=False, digits=2))
    return rows


def _idle_rss(side: Side) -> float:
    home = temp_home("tmpfs")
    (home / "agents/a/inbox").mkdir(parents=True)
    proc = subprocess.Popen(
        side.runner(), env=env_for(home), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
    )
    try:
        time.sleep(1.5)
        status = Path(f"/proc/{proc.pid}/status").read_text()
        hwm = next(line for line in status.splitlines() if line.startswith("VmHWM"))
    finally:
        orig.stop(proc)
        cleanup(home)
    return int(hwm.split()[1]) / 1024


def rss(loom: Side, original: Side | None, rounds: int) -> list[Row]:
    res = orig.alternate(
        rounds,
        loom=lambda: _idle_rss(loom),
        original=None if original is None else lambda: _idle_rss(original),
    )
    return [_row(f"idle runner peak RSS, median of {rounds}", res, "MiB", False, digits=1)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]),
    )
    parser.add_argument(
        "section", nargs="?", default="all", choices=["all", "startup", "drain", "latency", "rss"]
    )
    parser.add_argument("--original", metavar="PATH", help="checkout of the original loom")
    parser.add_argument("--runs", type=int, default=20, help="runs per start-up figure")
    parser.add_argument("--rounds", type=int, default=3, help="runs per drain and RSS figure")
    parser.add_argument(
        "--messages", type=int, nargs="+", default=[1000, 5000], help="tmpfs drain sizes"
    )
    parser.add_argument("--disk-messages", type=int, default=1000, help="disk drain size")
    parser.add_argument("--samples", type=int, default=100, help="latency samples")
    parser.add_argument("--gap", type=float, default=0.3, help="idle seconds between samples")
    args = parser.parse_args()
    found, why = orig.find(args.original)
    loom, original = _sides(found)
    print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load: {os.getloadavg()}")
    print("original: " + (found.version() if found else f"{orig.NOT_MEASURED}: {why}"))
    rows = [["measure", "loom", "original", "loom vs original"]]
    if args.section in ("all", "startup"):
        rows += startup(loom, original, args.runs)
    if args.section in ("all", "drain"):
        for n in args.messages:
            rows += drain(loom, original, n, "tmpfs", args.rounds)
        rows += drain(loom, original, args.disk_messages, "disk", args.rounds)
    if args.section in ("all", "latency"):
        rows += latency(loom, original, args.samples, args.gap)
    if args.section in ("all", "rss"):
        rows += rss(loom, original, args.rounds)
    print(table(rows))
    print("(> 1x: loom is better; drains on tmpfs run with fsync off for both)")


if __name__ == "__main__":
    main()
