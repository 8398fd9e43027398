"""`loom up` and `loom down`: bring a weave to life idempotently, or stop it (SPEC 9)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from loom import settings
from loom.agent import agents
from loom.cluster import share as shares
from loom.errors import UsageError
from loom.pipeline import save_definition
from loom.routing.edge import Edge, edge_from_json
from loom.routing.endpoints import instances
from loom.routing.table import replace_routes
from loom.store import atomic
from loom.store import home as homes
from loom.store.home import ProcessDir
from loom.store.processes import effective_status, stop
from loom.store.queue import count_messages
from loom.supervisor import control
from loom.weave import owners, placement
from loom.weave.edges import weave_edges
from loom.weave.model import AgentDef, Problem, Weave
from loom.weave.parse import WeaveInvalid

HASH_FILE = "config.hash"
ACTIVE = ("pending", "running", "idle", "restarting")


@dataclass
class Plan:
    """What `up` did to each process of the weave."""

    started: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)


def owner(weave: Weave) -> str:
    return owners.config_path(weave)


def _ledger(home: Path, weave: Weave) -> Path:
    digest = hashlib.sha256(owner(weave).encode()).hexdigest()[:16]
    return home / "weaves" / f"{digest}.json"


def _owned_edges(home: Path, weave: Weave) -> list[Edge]:
    try:
        data = json.loads(_ledger(home, weave).read_text("utf-8"))
    except (FileNotFoundError, ValueError):
        return []
    return [edge_from_json(e) for e in data.get("edges", [])]


def _owned_processes(home: Path, weave: Weave) -> list[ProcessDir]:
    return owners.owned(weave, home)


def conflicts(weave: Weave, home: Path) -> list[Problem]:
    """Names of the weave that another project or a hand-started process holds (SPEC 9)."""
    names = [instance for instance, _ in instances(weave_edges(weave))]
    return owners.conflicts(weave, home, names)


def check_home(weave: Weave) -> None:
    """`loom validate`: WeaveInvalid when another project holds one of the weave's names.

    Reads `$LOOM_HOME` without creating it.
    """
    home = Path(settings.HOME.get()).expanduser()
    problems = conflicts(weave, home) if home.is_dir() else []
    if problems:
        raise WeaveInvalid(str(weave.path), problems)


def processes(weave: Weave, home: Path) -> list[ProcessDir]:
    """The agents and pipe instances `weave` started under `home` (agents first)."""
    return _owned_processes(home, weave)


def check_credentials(weave: Weave, host: str | None = None) -> None:
    """Every agent's provider and loom settings, checked before anything starts."""
    for agent in weave.agents.values():
        if host is not None and host not in agent.hosts:
            continue
        env = dict(os.environ)
        env.update(agent.env)
        settings.check_all(env)
        agents.provider_for(agent.model, env)


def up(weave: Weave, home: Path, host: str | None = None) -> Plan:
    """Make `home` run exactly what `weave` declares; unchanged processes are left alone.

    With `cluster:`, only `host`'s share: its agents, the edges from them, and a bridge
    for each local destination fed through JetStream (docs/cluster.md).
    """
    host = placement.check_host(weave, host)
    problems = conflicts(weave, home)
    if problems:
        raise WeaveInvalid(str(weave.path), problems)
    check_credentials(weave, host)
    plan = Plan()
    me = owner(weave)
    for pipe in weave.pipes.values():
        save_definition(pipe, home)
        owners.claim(ProcessDir(home, "pipes", pipe.name), weave)
    wanted: set[str] = set()
    for agent in weave.agents.values():
        if host is not None and host not in agent.hosts:
            continue
        wanted.add(f"agents/{agent.name}")
        _apply_agent(agent, weave, plan)
    edges = placement.local_edges(weave, host)
    for instance, pipe_name in instances(edges):
        wanted.add(f"pipes/{instance}")
        _apply_instance(home, instance, weave.pipes[pipe_name].to_json_data(), weave, plan)
    if host is not None:
        share = placement.share_of(weave, host)
        shares.write(home, share)
        for dest in share.bridges:
            wanted.add(f"pipes/{shares.bridge_name(dest)}")
            _apply_bridge(home, dest, share, weave, plan)
    else:
        _leave_cluster(home, weave)
    for proc in _owned_processes(home, weave):
        if f"{proc.kind}/{proc.name}" not in wanted:
            if proc.status in ACTIVE:
                stop(proc.name)
                plan.stopped.append(proc.name)
            proc.disown()  # no longer in the file: no longer the project's
    owners.release_definitions(weave, home)
    replace_routes(home, _owned_edges(home, weave), edges)
    atomic.make_private_dir(_ledger(home, weave).parent)
    atomic.write_text(
        _ledger(home, weave),
        json.dumps({"config": me, "edges": [e.to_json() for e in edges]}, ensure_ascii=False),
    )
    started = control.ensure_supervisor(home)
    for name in [*plan.started, *plan.restarted]:
        proc = homes.find(name, home)
        control.wait_started(proc, home, started=started)
    return plan


def _apply_agent(agent: AgentDef, weave: Weave, plan: Plan) -> None:
    proc = homes.agent(agent.name)
    digest = agent.config_hash()
    status = proc.status
    if proc.read(HASH_FILE) == digest and status in ACTIVE and owners.is_mine(proc, weave):
        owners.claim(proc, weave)  # a new `name:` or a moved folder is recorded
        plan.unchanged.append(agent.name)
        return
    running = proc.served_by() is not None
    if running:
        stop(agent.name)
    spec = agents.AgentSpec(
        agent.name,
        agent.model,
        system=agent.system,
        env=agent.env,
        restart=agent.restart,
        tools=list(agent.tools) if agent.tools is not None else None,
        concurrency=agent.concurrency,
        rate=agent.rate,
        schema=agent.schema,
        options=dict(agent.options),
        input=agent.input,
    )
    proc = agents.prepare(spec, mode="detached")
    for filename, text in agent.memory.items():
        seed = proc.memory / filename
        if not seed.exists():  # a seed: what the agent learned since is kept
            atomic.make_private_dir(proc.memory)
            atomic.write_text(seed, text)
    proc.write(HASH_FILE, digest)
    owners.claim(proc, weave)
    proc.set_status("pending")
    (plan.restarted if running or status in ACTIVE else plan.started).append(agent.name)


def _apply_instance(
    home: Path, instance: str, definition: dict[str, object], weave: Weave, plan: Plan
) -> None:
    proc = ProcessDir(home, "pipes", instance).create()
    text = json.dumps(
        {**definition, "name": instance.split("~", 1)[0]}, ensure_ascii=False, indent=2
    )
    # A node-form pipe's folder holds its definition already.
    config = text if "~" in instance else None
    _run_detached(proc, text, weave, plan, config=config)


def _apply_bridge(home: Path, dest: str, share: shares.Share, weave: Weave, plan: Plan) -> None:
    name = shares.bridge_name(dest)
    proc = ProcessDir(home, "pipes", name).create()
    text = json.dumps([share.servers, share.creds, share.ca, share.host, share.project])
    _run_detached(proc, text, weave, plan)


def _run_detached(
    proc: ProcessDir, settings: str, weave: Weave, plan: Plan, *, config: str | None = None
) -> None:
    """Have the supervisor run `proc` for `weave` with `settings` (hashed): left alone when
    it already runs them, else stopped, its `config` written, and marked pending."""
    digest = hashlib.sha256(settings.encode()).hexdigest()[:16]
    status = proc.status
    if proc.read(HASH_FILE) == digest and status in ACTIVE and owners.is_mine(proc, weave):
        owners.claim(proc, weave)
        plan.unchanged.append(proc.name)
        return
    running = proc.served_by() is not None
    if running:
        stop(proc.name)
    if config is not None:
        atomic.write_text(proc.path / "config.json", config + "\n")
    proc.write("restart", "always")
    proc.write("mode", "detached")
    proc.write(HASH_FILE, digest)
    owners.claim(proc, weave)
    proc.set_status("pending")
    (plan.restarted if running or status in ACTIVE else plan.started).append(proc.name)


def _leave_cluster(home: Path, weave: Weave) -> None:
    """A weave without `cluster:` takes its home out of the cluster it was in."""
    share = shares.read(home)
    if share is not None and share.project == weave.project:
        shares.remove(home)


def down(weave: Weave, home: Path, host: str | None = None) -> list[str]:
    """Stop every process the weave started; all state stays on disk.

    With `cluster:` the host must be named, and be the one this home runs."""
    host = placement.check_host(weave, host)
    share = shares.read(home)
    if host is not None and share is not None and share.host != host:
        raise UsageError(f"{home} runs host '{share.host}', not '{host}'")
    stopped = []
    for proc in _owned_processes(home, weave):
        if proc.status in ACTIVE or proc.served_by() is not None:
            stop(proc.name)
            stopped.append(proc.name)
    return stopped


@dataclass(frozen=True)
class Row:
    """One line of the live view: a process of the weave and its queue."""

    name: str
    status: str
    waiting: int
    processed: int
    failed: int


def snapshot(weave: Weave, home: Path) -> list[Row]:
    """Status and queue counts of every process of the weave."""
    rows = []
    for proc in sorted(_owned_processes(home, weave), key=lambda p: (p.kind, p.name)):
        status, _ = effective_status(proc)
        rows.append(
            Row(
                proc.name,
                status,
                count_messages(proc.inbox) + count_messages(proc.inbox / ".in-progress"),
                count_messages(proc.inbox / ".processed"),
                count_messages(proc.inbox / ".failed"),
            )
        )
    return rows
