"""A randomized crash test (SPEC 1 principle 2). A weave is fed bursts of messages while a
killer SIGKILLs random loom processes (the supervisor included) and pauses others with
SIGSTOP/SIGCONT:

    first ──tag (map)──────────────────────────▶ last
      └────spread (dedupe, window, fanout) ──┬─▶ left
                                             └─▶ right

At the end every input has exactly one final output per destination, none is lost and
none is answered twice: `last` answers every message sent, and `left` and `right` each see
every distinct input in exactly one batch (a repeated input is dropped by the dedupe).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

from conftest import run_loom, spawn_loom, wait_for

from loom.store.home import pid_is_loom
from loom.store.message import new_message
from loom.store.queue import Queue

INPUTS = 300
ROUNDS = 12
# Every DUPLICATE_EVERY-th input is sent a second time, as a new message.
DUPLICATE_EVERY = 10
FAST = {"LOOM_RESTART_BASE": "0.05", "LOOM_RESTART_JITTER": "0.05"}
WEAVE = """\
version: 1
pipes:
  tag:
    - map: "{n: n, seen: `true`}"
  spread:
    from: [first]
    operators:
      - dedupe: {key: n}
      - window: {size: 8, timeout: 200ms}
      - fanout: [left, right]
agents:
  - {name: first, model: echo}
  - name: last
    model: echo
    from: [{agent: first, pipe: tag}]
  - {name: left, model: echo, input: envelopes}   # echo answers the JSON list
  - {name: right, model: echo, input: envelopes}
"""
PROCESSES = {
    "first": "agents/first",
    "last": "agents/last",
    "left": "agents/left",
    "right": "agents/right",
    "tag": "pipes/tag~first→last",
    "spread": "pipes/spread",
}


def alive_pid(path: Path) -> int | None:
    try:
        raw = path.read_text().strip()
    except FileNotFoundError:
        return None
    return int(raw) if raw.isdigit() and pid_is_loom(int(raw)) else None


def replies(outbox: Path) -> list[dict]:
    try:
        names = os.listdir(outbox)
    except FileNotFoundError:
        return []
    return [json.loads((outbox / n).read_text()) for n in names if n.endswith(".msg")]


def final_roots(outbox: Path) -> Counter[str]:
    """How many final outputs each root message got."""
    return Counter(msg["origin"].split("/")[0] for msg in replies(outbox))


def batched_inputs(outbox: Path) -> Counter[int]:
    """How many times each input number appears in the batches answered in `outbox`."""
    seen: Counter[int] = Counter()
    for msg in replies(outbox):
        for part in json.loads(msg["body"]):
            seen[json.loads(part["body"])["n"]] += 1
    return seen


def test_random_kills_and_pauses_lose_nothing_and_answer_nothing_twice(
    loom_home: Path, tmp_path: Path
) -> None:
    (tmp_path / "loom.yml").write_text(WEAVE)
    r = run_loom("up", "-d", cwd=tmp_path, env=FAST)
    assert r.returncode == 0, r.stderr
    inbox = Queue(loom_home / "agents/first/inbox", loom_home / "agents/first/outbox")
    rng = random.Random()
    seed = rng.randrange(1_000_000)
    rng.seed(seed)
    pidfiles = {key: loom_home / path / "pid" for key, path in PROCESSES.items()}
    pidfiles["supervisor"] = loom_home / "supervisor.pid"
    kills: Counter[str] = Counter()
    pauses: Counter[str] = Counter()
    paused: set[int] = set()
    supervisors: list[subprocess.Popen[bytes]] = []
    sent: list[str] = []
    numbers = 0

    def run_facts() -> str:
        return f"seed {seed}, kills {dict(kills)}, pauses {dict(pauses)}"

    try:
        # Messages arrive in bursts while processes die or freeze, so faults land mid-flow.
        for _ in range(ROUNDS):
            for _ in range(INPUTS // ROUNDS):
                copies = 2 if numbers % DUPLICATE_EVERY == 0 else 1
                for _ in range(copies):
                    msg = new_message("test", json.dumps({"n": numbers}))
                    inbox.send(msg)
                    sent.append(msg.filename)
                numbers += 1
            time.sleep(rng.uniform(0.02, 0.3))  # a random moment, not a synchronisation
            if rng.random() < 0.6:
                target = rng.choice([k for k in pidfiles if kills[k] < 3])
                pid = wait_for(
                    lambda t=target: alive_pid(pidfiles[t]), timeout=20, what=f"{target} running"
                )
                os.kill(pid, signal.SIGKILL)
                kills[target] += 1
                if target == "supervisor":
                    wait_for(lambda p=pid: not pid_is_loom(p), what="supervisor gone")
                    supervisors.append(spawn_loom("supervisor", "run", env=FAST))
            else:
                target = rng.choice(list(PROCESSES))
                pid = wait_for(
                    lambda t=target: alive_pid(pidfiles[t]), timeout=20, what=f"{target} running"
                )
                os.kill(pid, signal.SIGSTOP)
                paused.add(pid)
                time.sleep(rng.uniform(0.05, 0.5))  # how long it stays frozen
                os.kill(pid, signal.SIGCONT)
                paused.discard(pid)
                pauses[target] += 1
        print(f"crash-random run: {run_facts()}")
        last = loom_home / "agents/last/outbox"
        spread_to = [loom_home / "agents/left/outbox", loom_home / "agents/right/outbox"]
        wait_for(
            lambda: (
                len(final_roots(last)) >= len(sent)
                and all(len(batched_inputs(o)) >= numbers for o in spread_to)
            ),
            timeout=90,
            what=f"every final output ({run_facts()})",
        )
        # Let anything still in flight land, then count: nothing lost, nothing twice.
        queues = [loom_home / path / "inbox" for path in PROCESSES.values()]

        def settled() -> bool:
            return all(
                not any(n.endswith(".msg") for n in os.listdir(q))
                and not os.listdir(q / ".in-progress")
                for q in queues
            )

        wait_for(settled, timeout=20, what=f"all queues empty ({run_facts()})")
        roots = final_roots(last)
        assert sorted(roots) == sorted(sent), run_facts()
        twice = [r for r, c in roots.items() if c > 1]
        assert twice == [], f"answered twice ({run_facts()}): {twice[:5]}"
        for outbox in spread_to:
            seen = batched_inputs(outbox)
            assert sorted(seen) == list(range(numbers)), f"{outbox.parent.name}: {run_facts()}"
            twice = [n for n, c in seen.items() if c > 1]
            assert twice == [], f"{outbox.parent.name} twice ({run_facts()}): {twice[:5]}"
        assert sum(kills.values()) + sum(pauses.values()) == ROUNDS
    finally:
        for pid in paused:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        run_loom("down", cwd=tmp_path)
        for p in supervisors:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            for stream in (p.stdout, p.stderr):
                if stream is not None:
                    stream.close()
        sup = alive_pid(pidfiles["supervisor"])
        if sup:
            os.kill(sup, signal.SIGKILL)
