"""Cluster mode over a real NATS JetStream server: hosts are LOOM_HOMEs on one machine,
each with its own supervisor started by the real CLI (docs/cluster.md)."""

from __future__ import annotations

from cluster_kit import Hosts, hosts_fixture, nats_fixture, roots  # noqa: F401
from conftest import wait_for


def weave_file(hosts: Hosts) -> str:
    return str(hosts.root / "app" / "loom.yml")


def up(hosts: Hosts, host: str) -> None:
    done = hosts.loom(host, "up", "-d", "--config", weave_file(hosts))
    assert done.returncode == 0, done.stderr


def send(hosts: Hosts, count: int, start: int = 0) -> None:
    lines = "".join(f"job {i}\n" for i in range(start, start + count))
    done = hosts.loom("h1", "send", "intake", "--lines", input=lines)
    assert done.returncode == 0, done.stderr


def sink_roots(hosts: Hosts) -> list[str]:
    inbox = hosts.home("h1") / "agents" / "sink" / "inbox"
    return roots(inbox / ".processed") + roots(inbox / ".in-progress") + roots(inbox)


def worker_share(hosts: Hosts, host: str) -> int:
    return len(list((hosts.home(host) / "agents/worker/inbox/.processed").glob("*.msg")))


def test_work_crosses_hosts_once(hosts: Hosts) -> None:
    up(hosts, "h1")
    up(hosts, "h2")
    send(hosts, 40)
    got = wait_for(lambda: len(sink_roots(hosts)) >= 40 and sink_roots(hosts), 40, "40 at sink")
    assert len(got) == len(set(got)) == 40
    intake = {p.name for p in (hosts.home("h1") / "agents/intake/inbox/.processed").glob("*")}
    assert set(got) == intake
    assert worker_share(hosts, "h1") + worker_share(hosts, "h2") == 40
    assert worker_share(hosts, "h2") > 0
    # The hop shows in the source host's router log as going through NATS.
    logs = "".join(p.read_text() for p in (hosts.home("h1") / "router/logs").glob("*.ndjson"))
    assert "nats → h1, h2" in logs
