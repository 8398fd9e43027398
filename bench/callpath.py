"""The model-call path: a runner's CPU per message and its drain rate via the OpenAI wire.

Run:  .venv/bin/python bench/callpath.py --base /tmp/callpath-base     (~3 minutes)
      .venv/bin/python bench/callpath.py --messages 200 --rounds 1
      .venv/bin/python bench/callpath.py --model echo --levels 1 --messages 2000
      .venv/bin/python bench/callpath.py --delay 0.005 --levels 1,4 --messages 600

A detached agent (`--model openai/bench`) drains a full inbox of `--messages` messages
against the test suite's fake server (tests/llm_server.py, an instant streamed echo, run
as a process of its own so this script's polling does not slow it) at concurrency 1 and
16. Timed from the first reply seen to the last, so start-up is left out:
messages/s, and the runner's CPU (utime + stime from /proc/PID/stat) per message. The
connections the server accepted show whether the runner kept them alive.

`--base` is a checkout of loom to compare with (e.g. `git archive <commit> | tar -x -C
/tmp/callpath-base`), run by this interpreter with PYTHONPATH set to it. The original
TypeScript loom (bench/original.py) is run at concurrency 1 with `openai/bench` against
the same server; it asks for a whole JSON reply, not a stream, and has no concurrency
setting, so at 16 it says "not measured". Rounds alternate the order; medians are shown.

`--delay S` makes the server wait S seconds before each answer, a model that takes time
(e.g. 0.005): each message then also pays the runner's wake-up from an idle wait.

`--model echo` measures the floor under every model call instead: the runner's own work
per message (claim, reply, acknowledgement, conversation file, logs) with no wire at all;
the original then runs its echo model (`echo/a`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import original as orig  # noqa: E402
from _common import (  # noqa: E402
    cleanup,
    cpu_seconds,
    env_for,
    send_messages,
    start_agent,
    stop_home,
    table,
    temp_home,
)


class Server:
    """tests/llm_server.py in a process of its own; each answer after `delay` seconds."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay

    def __enter__(self) -> Server:
        script = Path(__file__).resolve().parent.parent / "tests" / "llm_server.py"
        self._proc = subprocess.Popen(
            [sys.executable, str(script), "--port", "0", "--delay", str(self.delay)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        self.url = self._proc.stdout.readline().split()[-1]
        return self

    def __exit__(self, *exc: object) -> None:
        self._proc.terminate()
        self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()

    def env(self) -> dict[str, str]:
        return {"OPENAI_BASE_URL": f"{self.url}/v1"}

    @property
    def connections(self) -> int:
        with urllib.request.urlopen(f"{self.url}/_connections") as answer:
            accepted: int = json.load(answer)["accepted"]
        # This question's own connection is one of them.
        return accepted - 1


KEY = {"OPENAI_API_KEY": "sk-bench"}


def _count(folder: Path) -> int:
    return orig.count_messages(folder)


def _watch(pid: Callable[[], int], outbox: Path, count: int, timeout: float) -> dict[str, float]:
    """Poll `outbox` until `count` replies: CPU and time from the first reply seen to the
    last, and the replies written in between."""
    started = time.perf_counter()
    first: tuple[float, float, int] | None = None
    while True:
        done = _count(outbox)
        now = time.perf_counter()
        if first is None and done >= 1:
            first = (now, cpu_seconds(pid()), done)
        if done >= count:
            break
        if now - started > timeout:
            raise SystemExit(f"drain timed out with {done}/{count} replies")
        time.sleep(0.002)
    assert first is not None
    cpu = cpu_seconds(pid()) - first[1]
    return {"seconds": now - first[0], "cpu": cpu, "replies": done - first[2]}


def loom_drain(
    base: Path | None, concurrency: int, count: int, model: str, delay: float = 0.0
) -> dict[str, float]:
    """One drain by loom (this checkout, or `base`), as a detached agent."""
    home = temp_home("tmpfs")
    with Server(delay) as server:
        env = {**env_for(home), **server.env(), **KEY}
        if base is not None:
            env["PYTHONPATH"] = str(base)
        inbox = home / "agents" / "a" / "inbox"
        try:
            # Not from this checkout, which `python -m` would put first on the path.
            start_agent(env, concurrency, cwd=home, model=model)
            pidfile = home / "agents" / "a" / "pid"
            # Sent once the runner is up, so the drain is not over before it is watched.
            send_messages(inbox, count)
            result = _watch(lambda: int(pidfile.read_text()), inbox.parent / "outbox", count, 600)
            result["connections"] = server.connections
        finally:
            stop_home(home)
            cleanup(home)
    return result


def original_drain(
    found: orig.Original, count: int, model: str, delay: float = 0.0
) -> dict[str, float]:
    """One drain by the original, its runner in the foreground."""
    home = temp_home("tmpfs")
    with Server(delay) as server:
        env = {**env_for(home), **KEY, "OPENAI_BASE_URL": server.url}
        inbox = home / "agents" / "a" / "inbox"
        inbox.mkdir(parents=True)
        for i in range(count):
            name, data = orig.message_file(i, f"message {i}")
            (inbox / name).write_bytes(data)
        # The original's echo model is named after the agent (bench/original.py).
        theirs = "echo/a" if model == "echo" else model
        cmd = found.cli("agent", "start", "a", "--model", theirs)
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            result = _watch(lambda: proc.pid, home / "agents" / "a" / "outbox", count, 600)
            result["connections"] = server.connections
        finally:
            orig.stop(proc)
            cleanup(home)
    return result


def _timed(
    detail: list[dict[str, float]], drain: Callable[[], dict[str, float]]
) -> Callable[[], float]:
    """A run for `orig.alternate` that keeps each drain's figures in `detail`."""

    def once() -> float:
        detail.append(drain())
        return detail[-1]["seconds"]

    return once


def _medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {
        "rate": orig.median([r["replies"] / r["seconds"] for r in runs]),
        "cpu_ms": orig.median([r["cpu"] * 1000 / r["replies"] for r in runs]),
        "connections": max(r["connections"] for r in runs),
    }


def _against(mine: dict[str, float], other: dict[str, float] | None) -> str:
    if other is None or other is mine:
        return "-"
    return f"{mine['rate'] / other['rate']:.2f}x rate, {mine['cpu_ms'] / other['cpu_ms']:.2f}x CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--base", type=Path, help="a loom checkout to compare with")
    parser.add_argument("--original", help="a checkout of the original (bench/original.py)")
    parser.add_argument("--model", default="openai/bench", help="openai/bench or echo")
    parser.add_argument("--levels", default="1,16", help="concurrencies, comma-separated")
    parser.add_argument(
        "--delay", type=float, default=0.0, help="seconds the server waits before each answer"
    )
    args = parser.parse_args()
    levels = [int(level) for level in args.levels.split(",")]
    found, why = orig.find(args.original)
    if found is None:
        print(f"original: {orig.NOT_MEASURED} ({why})", file=sys.stderr)
    n, model, delay = args.messages, args.model, args.delay
    rows = [["side", "concurrency", "msg/s", "CPU/msg", "connections", "vs before", "vs original"]]
    figures: dict[str, object] = {}
    for level in levels:
        detail: dict[str, list[dict[str, float]]] = {"after": []}
        runs: dict[str, Callable[[], float] | None] = {
            "after": _timed(detail["after"], lambda lv=level: loom_drain(None, lv, n, model, delay))
        }
        if args.base is not None:
            detail["before"] = []
            runs["before"] = _timed(
                detail["before"], lambda lv=level: loom_drain(args.base, lv, n, model, delay)
            )
        if found is not None and level == 1:
            detail["original"] = []
            runs["original"] = _timed(
                detail["original"], lambda f=found: original_drain(f, n, model, delay)
            )
        orig.alternate(args.rounds, **runs)
        medians = {side: _medians(v) for side, v in detail.items()}
        figures[str(level)] = medians
        for side in ("before", "after", "original"):
            m = medians.get(side)
            if m is None:
                if side == "original":
                    rows.append([side, str(level)] + [orig.NOT_MEASURED] * 5)
                continue
            rows.append(
                [
                    side,
                    str(level),
                    f"{m['rate']:.0f}",
                    f"{m['cpu_ms']:.2f} ms",
                    str(int(m["connections"])),
                    _against(m, medians.get("before")),
                    _against(m, medians.get("original")),
                ]
            )
    print(table(rows), flush=True)
    print(
        json.dumps(
            {
                "model": model,
                "messages": n,
                "rounds": args.rounds,
                "delay": delay,
                "figures": figures,
            }
        )
    )


if __name__ == "__main__":
    main()
