"""A runner's user-space instructions per message, counted by callgrind: a figure that a
shared machine's load does not move.

Run:  .venv/bin/python bench/instructions.py --base /tmp/callpath-base     (~2 minutes)
      .venv/bin/python bench/instructions.py --model echo

CPU seconds per message (bench/callpath.py) move by a tenth or more from one run to the
next on a shared VM; an instruction count does not (the same total to within about 1%
run to run). `loom agent serve a` runs under `valgrind --tool=callgrind` and drains a
full inbox against the test suite's fake server (tests/llm_server.py, in a process of
its own; `--model echo`: no wire), at concurrency 1. It runs twice, with `--small` and
`--large` messages, and the difference over the difference in messages is the count per
message, so start-up and the last idle wait are left out. What the kernel does (system
calls, waking up) is not counted: bench/syscalls.py counts the calls, bench/callpath.py
the time. `--base` is a loom checkout to compare with (PYTHONPATH). Needs valgrind.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import (  # noqa: E402
    cleanup,
    env_for,
    send_messages,
    start_agent,
    stop_home,
    table,
    temp_home,
)
from callpath import KEY, Server, _count  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def collected(base: Path, model: str, count: int) -> int:
    """Instructions of one runner that drains `count` messages, start-up included."""
    home = temp_home("tmpfs")
    with Server() as server, tempfile.TemporaryDirectory() as scratch:
        env = {**env_for(home), **server.env(), **KEY, "PYTHONPATH": str(base)}
        try:
            # The agent's folder as `agent start` makes it; then its runner is stopped,
            # the inbox filled, and the runner started again under callgrind.
            start_agent(env, 1, cwd=home, model=model)
            stop_home(home)
            send_messages(home / "agents" / "a" / "inbox", count)
            out = Path(scratch) / "callgrind.out"
            command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
            runner = subprocess.Popen(
                [*command, sys.executable, "-m", "loom", "agent", "serve", "a"],
                env=env,
                cwd=home,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            deadline = time.monotonic() + 900
            while _count(home / "agents" / "a" / "outbox") < count:
                if runner.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the runner under callgrind did not drain {count}")
                time.sleep(0.05)
            runner.send_signal(signal.SIGTERM)
            _, err = runner.communicate(timeout=120)
        finally:
            stop_home(home)
            cleanup(home)
    found = re.search(r"Collected : (\d+)", err)
    if found is None:
        raise SystemExit(f"callgrind printed no total:\n{err[-2000:]}")
    return int(found.group(1))


def per_message(base: Path, model: str, small: int, large: int) -> float:
    return (collected(base, model, large) - collected(base, model, small)) / (large - small)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="openai/bench", help="openai/bench or echo")
    parser.add_argument("--small", type=int, default=50)
    parser.add_argument("--large", type=int, default=250)
    parser.add_argument("--base", type=Path, help="a loom checkout to compare with")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("needs valgrind (apt install valgrind)")
    sides = {"after": ROOT} | ({"before": args.base} if args.base is not None else {})
    counts = {
        side: per_message(path, args.model, args.small, args.large) for side, path in sides.items()
    }
    rows = [["side", "instructions per message", "vs before"]]
    for side in ("before", "after"):
        if side in counts:
            ratio = (
                f"{counts['after'] / counts['before']:.2f}x"
                if side == "after" and "before" in counts
                else "-"
            )
            rows.append([side, f"{counts[side] / 1000:,.0f}k", ratio])
    print(table(rows))
    print(
        json.dumps(
            {"model": args.model, "messages": [args.small, args.large], "per_message": counts}
        )
    )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
