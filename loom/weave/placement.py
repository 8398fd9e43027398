"""Which host runs what in a weave with `cluster:` (docs/cluster.md), and its checks.

Placement is explicit: every agent names its `hosts:`. Without `cluster:` nothing here
applies, except that an edge whose two ends share no host cannot be carried at all.
"""

from __future__ import annotations

import importlib.util

from loom.cluster.share import Share, bridge_name
from loom.errors import UsageError
from loom.names import validate_name
from loom.routing.edge import Edge
from loom.weave.edges import weave_edges
from loom.weave.model import Problem, Weave

INSTALL = "pip install 'loom-runtime[nats]'"


def hosts_of(weave: Weave, name: str) -> tuple[str, ...]:
    """The hosts process `name` runs on (empty when the weave does not say)."""
    agent = weave.agents.get(name)
    return agent.hosts if agent is not None else ()


def remote(weave: Weave, edge: Edge, host: str) -> bool:
    """Whether `host`'s router sends `edge` through JetStream: its destination is
    elsewhere, or on several hosts (the hosts then share the work)."""
    assert edge.dest is not None
    return hosts_of(weave, edge.dest) != (host,)


def all_hosts(weave: Weave) -> list[str]:
    """Every host the weave names, in file order."""
    return list(dict.fromkeys(h for a in weave.agents.values() for h in a.hosts))


def check(weave: Weave) -> list[Problem]:
    """Placement problems: a missing `hosts:`, an edge no host can carry, no client."""
    problems: list[Problem] = []
    if weave.cluster is None:
        for edge in weave_edges(weave):
            ends = [hosts_of(weave, n) for n in (edge.source, edge.dest) if n is not None]
            if len(ends) == 2 and all(ends) and not set(ends[0]) & set(ends[1]):
                line = weave.lines.get(edge.dest or "", 1)
                problems.append(
                    Problem(
                        line,
                        1,
                        f"{edge.source} (hosts {', '.join(ends[0])}) and {edge.dest} "
                        f"(hosts {', '.join(ends[1])}) share no host: add `cluster:` "
                        "with a NATS server to carry the edge",
                    )
                )
        return problems
    line = weave.cluster.line or 1
    if importlib.util.find_spec("nats") is None:
        problems.append(
            Problem(line, 1, f"`cluster:` needs the NATS client; install it with: {INSTALL}")
        )
    for agent in weave.agents.values():
        if not agent.hosts:
            problems.append(
                Problem(agent.line or 1, 1, f"agent '{agent.name}' needs `hosts:` with `cluster:`")
            )
    for name in weave.node_pipes:
        problems.append(
            Problem(
                weave.lines.get(name, 1),
                1,
                f"pipe '{name}' has its own `from:`; with `cluster:` put the pipe on "
                "an agent's `from:` entry instead (it then runs on the source's hosts)",
            )
        )
    return problems


def share_of(weave: Weave, host: str) -> Share:
    """What `host` runs of a clustered weave: its agents, the edges its router carries
    (those whose source runs here), where they publish, and the bridges it needs."""
    assert weave.cluster is not None
    edges = weave_edges(weave)
    mine = [e for e in edges if host in hosts_of(weave, e.source)]
    remote_dests = {
        e.dest: list(hosts_of(weave, e.dest))
        for e in mine
        if e.dest is not None and remote(weave, e, host)
    }
    bridges = []
    for name, agent in weave.agents.items():
        if host not in agent.hosts:
            continue
        feeders = [e for e in edges if e.dest == name]
        if agent.hosts != (host,) or any(set(hosts_of(weave, e.source)) - {host} for e in feeders):
            if feeders:
                bridges.append(name)
    runs = [n for n, a in weave.agents.items() if host in a.hosts]
    return Share(
        host=host,
        project=weave.project,
        servers=list(weave.cluster.servers),
        creds=weave.cluster.creds,
        ca=weave.cluster.ca,
        replicas=weave.cluster.replicas,
        remote=remote_dests,
        bridges=bridges,
        runs=runs + [bridge_name(b) for b in bridges],
    )


def local_edges(weave: Weave, host: str | None) -> list[Edge]:
    """The edges this home's router carries: all of them, or in a cluster those whose
    source runs on `host`."""
    edges = weave_edges(weave)
    if weave.cluster is None or host is None:
        return edges
    return [e for e in edges if host in hosts_of(weave, e.source)]


def check_host(weave: Weave, host: str | None) -> str | None:
    """The host to act for: required with `cluster:`, one the weave names; UsageError."""
    if weave.cluster is None:
        return None
    if not host:
        raise UsageError(
            f"{weave.source} has `cluster:`: say which host this is with --host NAME (or LOOM_HOST)"
        )
    validate_name(host, "host name")
    known = all_hosts(weave)
    if host not in known:
        raise UsageError(
            f"no agent of {weave.source} runs on host '{host}' (its hosts: {', '.join(known)})"
        )
    return host
