"""A randomized crash test (SPEC 1 principle 2): agent → pipe → agent fed 500 messages
while a killer SIGKILLs random loom processes, the supervisor included. At the end every
input has exactly one final output, and none is lost."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

from conftest import run_loom, spawn_loom, wait_for

from loom.home import pid_is_loom
from loom.message import new_message
from loom.queue import Queue

INPUTS = 500
FAST = {"LOOM_RESTART_BASE": "0.05", "LOOM_RESTART_JITTER": "0.05"}


def alive_pid(path: Path) -> int | None:
    try:
        raw = path.read_text().strip()
    except FileNotFoundError:
        return None
    return int(raw) if raw.isdigit() and pid_is_loom(int(raw)) else None


def final_roots(outbox: Path) -> Counter[str]:
    roots: Counter[str] = Counter()
    for name in os.listdir(outbox):
        if name.endswith(".msg"):
            msg = json.loads((outbox / name).read_text())
            roots[msg["origin"].split("/")[0]] += 1
    return roots


def test_random_sigkills_lose_nothing_and_answer_nothing_twice(
    loom_home: Path, tmp_path: Path
) -> None:
    (tmp_path / "loom.yml").write_text(
        "version: 1\n"
        "pipes:\n"
        "  tag:\n"
        '    - map: "{n: n, seen: `true`}"\n'
        "agents:\n"
        "  - {name: first, model: echo}\n"
        "  - name: last\n"
        "    model: echo\n"
        "    from: [{agent: first, pipe: tag}]\n"
    )
    r = run_loom("up", "-d", cwd=tmp_path, env=FAST)
    assert r.returncode == 0, r.stderr
    inbox = Queue(loom_home / "agents/first/inbox", loom_home / "agents/first/outbox")
    rng = random.Random()
    seed = rng.randrange(1_000_000)
    rng.seed(seed)
    pidfiles = {
        "first": loom_home / "agents/first/pid",
        "last": loom_home / "agents/last/pid",
        "tag": loom_home / "pipes/tag~first→last/pid",
        "supervisor": loom_home / "supervisor.pid",
    }
    kills: Counter[str] = Counter()
    supervisors: list[subprocess.Popen[bytes]] = []
    outbox = loom_home / "agents/last/outbox"
    sent: list[str] = []
    rounds = 10
    try:
        # Messages arrive in bursts while processes die, so kills land mid-flow.
        for _ in range(rounds):
            for _ in range(INPUTS // rounds):
                msg = new_message("test", json.dumps({"n": len(sent)}))
                inbox.send(msg)
                sent.append(msg.filename)
            time.sleep(rng.uniform(0.02, 0.3))  # a random moment, not a synchronisation
            target = rng.choice([k for k in pidfiles if kills[k] < 4])
            pid = wait_for(
                lambda t=target: alive_pid(pidfiles[t]), timeout=20, what=f"{target} running"
            )
            os.kill(pid, signal.SIGKILL)
            kills[target] += 1
            if target == "supervisor":
                wait_for(lambda p=pid: not pid_is_loom(p), what="supervisor gone")
                supervisors.append(spawn_loom("supervisor", "run", env=FAST))
        wait_for(
            lambda: outbox.is_dir() and len(final_roots(outbox)) >= INPUTS,
            timeout=90,
            what=f"{INPUTS} final outputs (seed {seed}, kills {dict(kills)})",
        )
        # Let anything still in flight land, then count: nothing lost, nothing twice.
        queues = [
            loom_home / "agents/first/inbox",
            loom_home / "agents/last/inbox",
            loom_home / "pipes/tag~first→last/inbox",
        ]

        def settled() -> bool:
            return all(
                not any(n.endswith(".msg") for n in os.listdir(q))
                and not os.listdir(q / ".in-progress")
                for q in queues
            )

        wait_for(settled, timeout=20, what="all queues empty")
        roots = final_roots(outbox)
        assert sorted(roots) == sorted(sent), f"seed {seed}"
        twice = [r for r, c in roots.items() if c > 1]
        assert twice == [], f"answered twice (seed {seed}): {twice[:5]}"
        assert sum(kills.values()) == rounds
    finally:
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
