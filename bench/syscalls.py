"""System calls and fsyncs per message of an echo agent draining a prepared inbox.

Run:  .venv/bin/python bench/syscalls.py                     (300 and 1,000 messages)
      .venv/bin/python bench/syscalls.py --counts 30,1000 --where disk --fsync on
      .venv/bin/python bench/syscalls.py --model openai/bench --counts 300 --fsync off
      .venv/bin/python bench/syscalls.py --model openai/bench --concurrency 4 --fsync off

`--model openai/bench` puts each message through the OpenAI wire instead, against the
test suite's fake server (tests/llm_server.py, in a process of its own, untraced).

The runner is the real CLI as the supervisor starts it (`loom agent serve a`, model
`echo`), under `strace -f -o TRACE` (every call, every thread). The bench waits until
every message is in `.processed/`, stops the runner with SIGTERM and reads the trace.

Two counts are printed, both divided by the number of messages:

- window: only the calls between the first claim (the rename of an inbox file into
  `.in-progress/`) and the last acknowledgement (the rename into `.processed/`), so
  start-up, recovery and the idle wait are left out. A call is counted once: strace
  splits a call that another thread interrupts into an `<unfinished ...>` line and a
  `<... resumed>` line, and only the first is counted.
- whole run minus an empty run: `strace -f -c` of the whole run, less `strace -f -c` of
  a runner started on an empty inbox and stopped once idle. It includes what a drain
  costs besides messages (listing the inbox, status files), so it is a little higher.

fsyncs are fsync and fdatasync calls; syncfs, which loom uses for big batches of sends,
is printed too (a runner never calls it).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import LOOM, cleanup, env_for, temp_home  # noqa: E402
from callpath import KEY, Server  # noqa: E402

from loom.store.message import new_message  # noqa: E402

# `PID name(args...` for a call's first (or only) line; `<... name resumed>` lines,
# `--- SIGTERM ---` and `+++ exited` do not match.
CALL = re.compile(r"^(?:\[pid\s+)?\d+\]?\s+([a-z_0-9]+)\(")
# A rename's source and target folders (rename, renameat, renameat2).
RENAME = re.compile(
    r'rename(?:at2?)?\((?:[^,]*, )?"(?P<src>[^"]*)/[^/"]*", (?:[^,]*, )?"(?P<dst>[^"]*)/[^/"]*"'
)
FSYNCS = ("fsync", "fdatasync")
TIMEOUT_S = 300.0


@dataclass
class Model:
    """Agent `a`'s model, and what its runner's environment needs for it."""

    name: str
    env: dict[str, str]
    concurrency: int = 1


def prepare(count: int, where: str, model: Model) -> Path:
    """A home with agent `a` on `model` and `count` messages waiting in its inbox."""
    home = temp_home(where)
    os.chmod(home, 0o700)
    agent = home / "agents" / "a"
    inbox = agent / "inbox"
    inbox.mkdir(parents=True)
    (agent / "model").write_text(f"{model.name}\n")
    if model.concurrency > 1:
        (agent / "concurrency").write_text(f"{model.concurrency}\n")
    for i in range(count):
        msg = new_message("bench", f"message {i}")
        (inbox / msg.filename).write_bytes(msg.to_bytes())
    os.sync()
    return home


def command(trace: Path, summary: bool) -> list[str]:
    return [
        "strace",
        "-f",
        *(["-c"] if summary else []),
        "-o",
        str(trace),
        *LOOM,
        "agent",
        "serve",
        "a",
    ]


def run(
    home: Path, count: int, fsync: bool, trace: Path, summary: bool, model_env: dict[str, str]
) -> None:
    """Run the traced runner until `count` messages are processed (or, for 0, it is idle)."""
    agent = home / "agents" / "a"
    processed = agent / "inbox" / ".processed"
    tracer = subprocess.Popen(
        command(trace, summary),
        env={**env_for(home, fsync), **model_env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while True:
            if tracer.poll() is not None:
                raise SystemExit(f"the runner exited early ({tracer.returncode})")
            if time.monotonic() > deadline:
                raise SystemExit("the runner did not finish in time")
            done = len(os.listdir(processed)) if processed.is_dir() else 0
            status = (agent / "status").read_text().strip() if (agent / "status").exists() else ""
            if done >= count and status == "idle":
                break
            time.sleep(0.05)
    finally:
        # The runner, not strace: a signalled strace detaches and leaves it running.
        raw = (agent / "pid").read_text().strip() if (agent / "pid").exists() else ""
        if raw.isdigit():
            os.kill(int(raw), signal.SIGTERM)
        try:
            tracer.wait(30)
        except subprocess.TimeoutExpired:
            tracer.kill()
            tracer.wait()


def window_counts(trace: Path) -> Counter[str]:
    """Calls by name from the first claim to the last acknowledgement, inclusive."""
    lines = trace.read_text(errors="replace").splitlines()
    moves = [(i, RENAME.search(ln)) for i, ln in enumerate(lines)]
    first = next(i for i, m in moves if m and m["dst"].endswith("/inbox/.in-progress"))
    last = max(i for i, m in moves if m and m["dst"].endswith("/inbox/.processed"))
    counts: Counter[str] = Counter()
    for ln in lines[first : last + 1]:
        m = CALL.match(ln)
        if m:
            counts[m.group(1)] += 1
    return counts


def summary_counts(trace: Path) -> Counter[str]:
    """Calls by name from an `strace -c` table."""
    counts: Counter[str] = Counter()
    for ln in trace.read_text().splitlines():
        parts = ln.split()
        # % time, seconds, usecs/call, calls, [errors], syscall
        if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
            counts[parts[-1]] += int(parts[3])
    return counts


def measure(
    count: int, fsync: bool, where: str, keep: Path | None, model: Model
) -> dict[str, Counter[str]]:
    results: dict[str, Counter[str]] = {}
    for label, n, summary in (("window", count, False), ("run", count, True), ("empty", 0, True)):
        home = prepare(n, where, model)
        trace = home / "trace.txt"
        try:
            run(home, n, fsync, trace, summary, model.env)
            counts = summary_counts(trace) if summary else window_counts(trace)
            if keep is not None and label == "window":
                shutil.copy(trace, keep / f"trace-{count}-fsync-{int(fsync)}.txt")
            results[label] = counts
        finally:
            cleanup(home)
    return results


def report(count: int, fsync: bool, where: str, results: dict[str, Counter[str]]) -> None:
    window = results["window"]
    whole = results["run"] - results["empty"]  # Counter subtraction keeps positives only
    print(f"\n{count:,} messages, fsync {'on' if fsync else 'off'}, {where}")
    print(f"  {'syscall':<18}{'window':>10}{'run-empty':>12}   (per message)")
    names = sorted(set(window) | set(whole), key=lambda n: -(window[n] + whole[n]))
    for name in names:
        if window[name] / count >= 0.05 or whole[name] / count >= 0.05:
            print(f"  {name:<18}{window[name] / count:>10.2f}{whole[name] / count:>12.2f}")
    print(f"  {'all':<18}{sum(window.values()) / count:>10.2f}{sum(whole.values()) / count:>12.2f}")
    fs_w = sum(window[n] for n in FSYNCS)
    fs_r = sum(whole[n] for n in FSYNCS)
    print(
        f"  fsyncs per message: window {fs_w / count:.2f} ({fs_w} in all), "
        f"run-empty {fs_r / count:.2f}; syncfs {window['syncfs']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="300,1000", help="message counts, comma-separated")
    parser.add_argument("--fsync", choices=("on", "off", "both"), default="both")
    parser.add_argument("--where", choices=("tmpfs", "disk"), default="disk")
    parser.add_argument("--keep", type=Path, help="copy each window trace into this folder")
    parser.add_argument("--model", default="echo", help="echo or openai/bench")
    parser.add_argument("--concurrency", type=int, default=1, help="the agent's calls in flight")
    args = parser.parse_args()
    if shutil.which("strace") is None:
        raise SystemExit("bench/syscalls.py needs strace (apt-get install strace)")
    counts = [int(c) for c in args.counts.split(",")]
    modes = {"on": [True], "off": [False], "both": [False, True]}[args.fsync]
    print("command: " + " ".join(command(Path("TRACE"), False)) + "  (and with -c)")
    print(
        f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"model {args.model}, concurrency {args.concurrency}"
    )
    with contextlib.ExitStack() as stack:
        model = Model(args.model, {}, args.concurrency)
        if args.model != "echo":  # the OpenAI wire, to a server of its own
            server = stack.enter_context(Server())
            model.env.update({**server.env(), **KEY})
        for fsync in modes:
            for count in counts:
                found = measure(count, fsync, args.where, args.keep, model)
                report(count, fsync, args.where, found)


if __name__ == "__main__":
    main()
