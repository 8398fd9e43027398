"""Starting agents: their folder, their provider, and the foreground modes (SPEC 5)."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loom.agent.batches import DEFAULT_INPUT, check_input
from loom.agent.gate import CallGate, check_concurrency, parse_rate
from loom.agent.retry import RetryPolicy
from loom.agent.runner import AgentRunner, Outcome
from loom.errors import UsageError
from loom.names import env_entry_problem
from loom.providers import provider_of, resolve
from loom.providers.base import Provider, Turn
from loom.providers.json_schema import SCHEMA_LIMIT, check_schema, parse_schema
from loom.providers.options import check_options
from loom.store import atomic
from loom.store import home as homes
from loom.store.files import read_bounded_text
from loom.store.home import MAX_CONCURRENCY, AlreadyServed, Ownership, ProcessDir
from loom.store.logs import Log
from loom.store.message import Message, decode_envelope, from_dict, new_message
from loom.store.queue import Queue
from loom.store.worker import Stopping, Worker
from loom.tools import scope
from loom.tools.discovery import discover
from loom.tools.settings import ToolSettings
from loom.tools.toolbox import Toolbox

RESTART_POLICIES = ("always", "on-failure", "never")
SCHEMA_FILE = "schema.json"
OPTIONS_FILE = "options.json"
INPUT_FILE = "input"
# Environment entries that look like credentials are given to the runner but never
# written into the agent's folder (SPEC 5: keys never reach state files).
SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)


@dataclass
class AgentSpec:
    """What `loom agent start` (or a weave) says about one agent."""

    name: str
    model: str
    system: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    restart: str = "always"
    # The tools the agent may use, by name; None: every tool found (SPEC 12).
    tools: list[str] | None = None
    # Messages answered at once (serving detached), and the limit on model calls
    # (`60/m`); None: no limit.
    concurrency: int = 1
    rate: str | None = None
    # The JSON Schema replies must be valid against (structured output); None: free text.
    schema: dict[str, Any] | None = None
    # Model options (`-o temperature 0.2`), checked against the provider's own list.
    options: dict[str, Any] = field(default_factory=dict)
    # What the model reads of a batch (loom.agent.batches): labelled bodies or envelopes.
    input: str = DEFAULT_INPUT

    def __post_init__(self) -> None:
        homes.agent(self.name)  # validates the name
        if not self.model.strip():
            raise UsageError("--model is empty; give a model such as 'echo' or 'ollama/qwen3:8b'")
        provider_of(self.model)  # an unknown provider fails here, before any file or call
        if self.restart not in RESTART_POLICIES:
            raise UsageError(
                f"unknown restart policy '{self.restart}'; use one of {', '.join(RESTART_POLICIES)}"
            )
        for key, value in self.env.items():
            problem = env_entry_problem(key, value)
            if problem is not None:
                raise UsageError(f"{problem} (--env)")
        if self.tools is not None:
            scope.check_names(self.tools)
        check_concurrency(self.concurrency)
        if self.rate is not None:
            parse_rate(self.rate)
        if self.schema is not None:
            check_schema(self.schema)
        check_options(self.model, self.options)
        problem = check_input(self.input)
        if problem is not None:
            raise UsageError(f"--{problem}")


def parse_env_pairs(pairs: list[str]) -> dict[str, str]:
    """Turn `KEY=VALUE` strings into a dict; a pair without '=' is a usage error."""
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--env takes KEY=VALUE, got {pair!r}")
        problem = env_entry_problem(key, value)
        if problem is not None:
            raise UsageError(f"--env {problem}")
        env[key] = value
    return env


def prepare(spec: AgentSpec, mode: str = "foreground") -> ProcessDir:
    """Create or update the agent's folder and its config files.

    `mode` says who runs it: `detached` agents are the supervisor's, `foreground`
    ones belong to the shell that started them and are never restarted. Tools named in
    the spec are looked up first, so an unknown one fails before anything is written.
    """
    return _write_files(spec, mode, _tool_links(spec))


def _write_files(spec: AgentSpec, mode: str, links: dict[str, Path] | None) -> ProcessDir:
    proc = homes.agent(spec.name).create()
    proc.disown()  # started by hand now; `loom up` writes its project back after this
    proc.write("mode", mode)
    proc.write("model", spec.model)
    proc.write("restart", spec.restart)
    # Written only when set: an agent at the defaults has no files for them.
    if spec.concurrency != 1:
        proc.write("concurrency", str(spec.concurrency))
    else:
        proc.forget("concurrency")
    if spec.rate:
        proc.write("rate", spec.rate)
    else:
        proc.forget("rate")
    if spec.input != DEFAULT_INPUT:
        proc.write(INPUT_FILE, spec.input)
    else:
        proc.forget(INPUT_FILE)
    if spec.schema is not None:
        proc.write(SCHEMA_FILE, _schema_text(spec.schema))
    else:
        proc.forget(SCHEMA_FILE)
    if spec.options:
        proc.write(OPTIONS_FILE, _options_text(spec.options))
    else:
        proc.forget(OPTIONS_FILE)
    if spec.system is not None:
        atomic.write_text(proc.prompt, spec.system)
    lines = [f"{k}={v}" for k, v in spec.env.items() if not SECRET_NAME.search(k)]
    proc.write("env", "\n".join(lines))
    scope.write(proc.path, links)
    return proc


def _tool_links(spec: AgentSpec) -> dict[str, Path] | None:
    """The plugin behind each tool the spec names, found from the current folder."""
    if spec.tools is None:
        return None
    env = {**os.environ, **spec.env}
    found = discover(homes.home(), Path.cwd(), env, ToolSettings.from_env(env))
    return scope.select(spec.tools, found)


def changed_settings(spec: AgentSpec, proc: ProcessDir) -> list[str]:
    """The settings of `spec` that differ from those stored in `proc` (what a start would
    rewrite): model, system prompt, env, restart, concurrency, rate, schema, options, input,
    tools. A system prompt not given keeps the stored one, as `prepare` does, so it is not a
    change."""
    changed = []
    if proc.read("model") != spec.model:
        changed.append("model")
    if spec.system is not None:
        try:
            stored = proc.prompt.read_text("utf-8")
        except (OSError, UnicodeDecodeError):
            stored = None
        if stored != spec.system:
            changed.append("system prompt")
    wanted_env = {k: v for k, v in spec.env.items() if not SECRET_NAME.search(k)}
    if read_env_file(proc) != wanted_env:
        changed.append("env")
    if (proc.read("restart") or "always") != spec.restart:
        changed.append("restart")
    if (proc.read("concurrency") or "1") != str(spec.concurrency):
        changed.append("concurrency")
    if (proc.read("rate") or None) != spec.rate:
        changed.append("rate")
    if proc.read(SCHEMA_FILE) != (_schema_text(spec.schema) if spec.schema else None):
        changed.append("schema")
    if proc.read(OPTIONS_FILE) != (_options_text(spec.options) if spec.options else None):
        changed.append("options")
    if (proc.read(INPUT_FILE) or DEFAULT_INPUT) != spec.input:
        changed.append("input")
    if _stored_tools(proc) != (_tool_links(spec) if spec.tools is not None else None):
        changed.append("tools")
    return changed


def _schema_text(schema: dict[str, Any]) -> str:
    return json.dumps(schema, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _options_text(options: dict[str, Any]) -> str:
    return json.dumps(options, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def stored_options(proc: ProcessDir) -> dict[str, Any]:
    """The agent's `options.json` ({} when there is none); a hand edit that broke it is
    a usage error naming the file."""
    path = proc.path / OPTIONS_FILE
    try:
        text = read_bounded_text(path, SCHEMA_LIMIT, OPTIONS_FILE)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{path} is not JSON ({exc}); start the agent again with -o") from None
    if not isinstance(value, dict):
        raise UsageError(f"{path} must hold a JSON object of model options")
    return value


def stored_schema(proc: ProcessDir) -> dict[str, Any] | None:
    """The agent's `schema.json`, checked again (a hand edit may have broken it)."""
    path = proc.path / SCHEMA_FILE
    try:
        text = read_bounded_text(path, SCHEMA_LIMIT, SCHEMA_FILE)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    return parse_schema(text, str(path))


def _stored_tools(proc: ProcessDir) -> dict[str, Path] | None:
    """The agent's `tools/` links as name -> target; None when it may use every tool."""
    folder = proc.path / scope.TOOLS_DIR
    if not folder.is_dir() or folder.is_symlink():
        return None
    return {e.name: Path(os.readlink(e)) for e in folder.iterdir() if e.is_symlink()}


def parse_tool_names(raw: str) -> list[str]:
    """`--tools a,b` as names; an empty string means no tools at all."""
    return scope.parse_names(raw)


def read_env_file(proc: ProcessDir) -> dict[str, str]:
    """The agent's `env` file as a dict (KEY=VALUE lines; blank lines and # comments skipped)."""
    raw = proc.read("env") or ""
    env: dict[str, str] = {}
    for line in raw.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.lstrip().startswith("#"):
            env[key.strip()] = value
    return env


def provider_for(model: str, env: Mapping[str, str]) -> tuple[Provider, str]:
    """Resolve the provider and check its settings before any message is claimed."""
    provider, model_id = resolve(model, env)
    provider.check()
    return provider, model_id


@dataclass
class Session:
    """A runner wired to its worker, ready to serve or to answer given messages."""

    proc: ProcessDir
    runner: AgentRunner
    worker: Worker

    @property
    def queue(self) -> Queue:
        return self.runner.queue


def open_session(
    spec: AgentSpec,
    *,
    sink: Callable[[str], None] | None,
    foreground: bool,
    interactive: bool = False,
    earlier: list[Turn] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Session:
    """Resolve the provider (a missing key fails here), own the agent's queue, prepare
    the folder, build the runner. An interactive session keeps its context, starting
    with `earlier` turns (`--continue`, `loom ask --agent`); given `earlier`, any session
    starts with them.

    AlreadyServed when another process serves the agent, raised before anything is
    written, so a refused start rewrites none of the running agent's files.
    """
    proc = homes.agent(spec.name)
    served_by = proc.owner_pid()
    if served_by is not None:
        # Said first: handing a message to the owner needs no provider settings here.
        raise AlreadyServed(proc, served_by)
    env = dict(os.environ if environ is None else environ)
    env.update(spec.env)
    provider, model_id = provider_for(spec.model, env)
    links = _tool_links(spec)
    owner = proc.own()
    try:
        proc = _write_files(spec, "foreground" if foreground else "detached", links)
        # In the foreground one message at a time: replies stream to one terminal.
        return _session(
            proc,
            spec,
            provider,
            model_id,
            env,
            sink=sink,
            context=list(earlier or []) if interactive or earlier is not None else None,
            owner=owner,
            concurrency=1,
        )
    except BaseException:
        owner.release()
        raise


def _session(
    proc: ProcessDir,
    spec: AgentSpec,
    provider: Provider,
    model_id: str,
    env: Mapping[str, str],
    *,
    sink: Callable[[str], None] | None,
    context: list[Turn] | None,
    owner: Ownership,
    concurrency: int,
) -> Session:
    log = Log(proc.logs, spec.name, echo=sys.stderr)
    toolbox = Toolbox(
        proc.path,
        agent=spec.name,
        home=homes.home(),
        cwd=Path.cwd(),
        env=env,
        log=log,
        settings=ToolSettings.from_env(env),
    )
    runner = AgentRunner(
        proc=proc,
        provider=provider,
        model=spec.model,
        model_id=model_id,
        log=log,
        retry=RetryPolicy.from_env(env),
        sink=sink,
        context=context,
        toolbox=toolbox,
        gate=CallGate(parse_rate(spec.rate) if spec.rate else None),
        schema=spec.schema,
        options=spec.options,
        input_mode=spec.input,
    )
    worker = Worker(
        proc, runner.queue, runner, log, owner=owner, concurrency=concurrency, group_commit=True
    )
    runner.worker = worker
    return Session(proc, runner, worker)


def detached_session(name: str) -> Session:
    """The session of a detached agent, built from the files in its folder.

    Run by the supervisor as `loom agent serve NAME`; warnings go to stderr, which the
    supervisor keeps in the agent's `stderr.log`.
    """
    proc = homes.agent(name)
    model = proc.read("model")
    if not proc.exists() or not model:
        raise UsageError(f"agent '{name}' has no model file; start it with 'loom agent start'")
    owner = proc.own()
    try:
        spec = AgentSpec(
            name,
            model,
            env=read_env_file(proc),
            restart=proc.read("restart") or "always",
            concurrency=_stored_concurrency(proc),
            rate=proc.read("rate") or None,
            schema=stored_schema(proc),
            options=stored_options(proc),
            input=proc.read(INPUT_FILE) or DEFAULT_INPUT,
        )
        env = dict(os.environ)
        env.update(spec.env)
        provider, model_id = provider_for(model, env)
        proc.create()
    except BaseException:
        owner.release()
        raise
    return _session(
        proc,
        spec,
        provider,
        model_id,
        env,
        sink=None,
        context=None,
        owner=owner,
        concurrency=spec.concurrency,
    )


def _stored_concurrency(proc: ProcessDir) -> int:
    """The agent's `concurrency` file; 1 when there is none (an agent of an older loom)."""
    concurrency = proc.concurrency
    if concurrency is None:
        raw = proc.read("concurrency")
        raise UsageError(
            f"{proc.path / 'concurrency'} holds {raw!r}, not a number from 1 to {MAX_CONCURRENCY}"
        )
    return concurrency


def stdin_messages(data: bytes, prompt: str | None) -> list[Message]:
    """Frame stdin for `--stdin`: one message of all of it, or the envelopes it carries.

    Stdin that consists only of loom envelopes (one JSON object per line, e.g. from
    `loom pipe run --envelope`) is taken as those messages, keeping ids and origins.
    """
    # Like $(...) in the shell: trailing newlines are framing, not content.
    text = data.decode("utf-8", errors="replace").rstrip("\n")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if prompt is None and lines and all(ln.lstrip().startswith("{") for ln in lines):
        decoded = [decode_envelope(ln) for ln in lines]
        envelopes = [d for d in decoded if d is not None]
        if len(envelopes) == len(lines):
            return [from_dict(d) for d in envelopes]
    body = text if prompt is None else (f"{prompt}\n\n{text}" if text.strip() else prompt)
    if not body.strip():
        raise UsageError("stdin is empty: nothing to send (pipe some text in, or give a prompt)")
    return [new_message("stdin", body)]


def answer(session: Session, messages: list[Message]) -> list[Outcome]:
    """Deliver `messages` to the inbox and answer exactly those (no recovery, SPEC 5 `--stdin`)."""
    outcomes: list[Outcome] = []
    session.runner.outcomes = outcomes
    session.worker.install_signals()
    session.worker.mark_started()
    status = "error"
    name = None
    try:
        for msg in messages:
            name = msg.filename
            session.queue.send(msg, name)
            if session.queue.claim(name) is None:
                continue  # a detached runner on the same agent took it: it will answer
            session.proc.set_status("running")
            session.worker.handle(name)
            if session.worker.stopping:
                break
        status = "stopped"
    except Stopping:
        status = "stopped"
        # The message was put back for a later answer; nobody asked for one: the user
        # who asked has gone (Ctrl-C) or was stopped (SIGTERM).
        if name is not None and session.queue.claim(name) is not None:
            session.runner.interrupted(name, session.worker.signum or signal.SIGINT)
    finally:
        session.worker.mark_stopped(status)
    return outcomes


def serve(session: Session, initial: list[Message]) -> None:
    """Serve the inbox in the foreground until SIGTERM or Ctrl-C (recovery first)."""
    session.worker.install_signals()
    session.worker.mark_started()
    for msg in initial:
        session.queue.send(msg)
    status = "error"
    try:
        session.worker.serve()
        status = "stopped"
    except Stopping:
        status = "stopped"
    finally:
        session.worker.mark_stopped(status)
