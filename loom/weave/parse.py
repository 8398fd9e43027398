"""Reading `loom.yml` into a Weave, collecting every problem with its line and column."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from loom.agent.batches import DEFAULT_INPUT, check_input
from loom.agent.gate import parse_rate
from loom.errors import ConfigError, InvalidName, UsageError
from loom.names import env_entry_problem, validate_name
from loom.ops.gc.retention import COUNT_KEYS, check
from loom.pipeline import PipeDef, parse_definition
from loom.pipeline.spec import DefinitionInvalid
from loom.pipeline.yaml_lines import LineDict, LineList, YamlError, read_yaml
from loom.providers import provider_of
from loom.providers.json_schema import check_schema, load_schema
from loom.providers.options import option_problem
from loom.routing.edge import DEFAULT_LIMIT
from loom.store.files import CONFIG_LIMIT, PROMPT_LIMIT, read_bounded, read_bounded_text
from loom.store.home import concurrency_problem
from loom.supervisor.policy import POLICIES
from loom.weave.expand import expand
from loom.weave.model import AgentDef, Cluster, Inbound, Problem, Weave
from loom.weave.validate import validate

TOP_KEYS = ("version", "name", "home", "cluster", "pipes", "agents", "gc")
AGENT_KEYS = (
    "name",
    "model",
    "system",
    "system_file",
    "restart",
    "env",
    "from",
    "memory",
    "tools",
    "concurrency",
    "rate",
    "schema",
    "options",
    "input",
    "hosts",
)
CLUSTER_KEYS = ("nats", "creds", "ca", "replicas")
FROM_KEYS = ("agent", "pipe", "when", "limit")
GC_KEYS = ("retention",)
YAML_BOOLEANS = "YAML reads on/off/yes/no/true/false as booleans: quote it"


class WeaveInvalid(ConfigError):
    """A loom.yml with problems; `problems` holds every one, in file order."""

    exit_code = 1

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = sorted(problems, key=lambda p: (p.line, p.column))
        super().__init__("\n".join(p.render(source) for p in self.problems))


class _Reader:
    """Walks the YAML tree, expanding variables and noting problems instead of stopping."""

    def __init__(self, source: str, environ: Mapping[str, str], base: Path) -> None:
        self.source = source
        self.environ = environ
        self.base = base  # relative paths in the file are relative to its folder
        self.problems: list[Problem] = []

    def problem(self, where: tuple[int, int], message: str) -> None:
        self.problems.append(Problem(where[0], where[1], message))

    # -- positions -------------------------------------------------------------------
    @staticmethod
    def key_at(mapping: Any, key: str) -> tuple[int, int]:
        marks = getattr(mapping, "key_marks", {})
        return marks.get(key) or (getattr(mapping, "line", None) or 1, 1)

    @staticmethod
    def value_at(mapping: Any, key: str) -> tuple[int, int]:
        marks = getattr(mapping, "value_marks", {})
        return marks.get(key) or _Reader.key_at(mapping, key)

    @staticmethod
    def at(node: Any) -> tuple[int, int]:
        return (getattr(node, "line", None) or 1, getattr(node, "column", None) or 1)

    # -- checks ----------------------------------------------------------------------
    def keys(self, mapping: Mapping[Any, Any], allowed: tuple[str, ...], what: str) -> None:
        for key in mapping:
            where = self.key_at(mapping, str(key))
            if not isinstance(key, str):
                self.problem(where, f"{what} has a key read as {key!r}; {YAML_BOOLEANS}")
            elif key not in allowed:
                hint = difflib.get_close_matches(key, allowed, n=1)
                suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
                self.problem(where, f"unknown key '{key}' in {what}{suggestion}")

    def string(self, mapping: Any, key: str, what: str, *, expand_vars: bool = True) -> str | None:
        """A string value (variables expanded), or None with a problem noted."""
        value = mapping.get(key)
        where = self.value_at(mapping, key)
        if isinstance(value, bool):
            self.problem(
                where, f"{what} must be a string, got {str(value).lower()}; {YAML_BOOLEANS}"
            )
            return None
        if isinstance(value, int | float):
            self.problem(where, f"{what} must be a string, got the number {value}; quote it")
            return None
        if not isinstance(value, str):
            self.problem(where, f"{what} must be a string")
            return None
        if not expand_vars:
            return value
        text, missing = expand(value, self.environ)
        for name in missing:
            self.problem(
                where, f"${{{name}}} is not set (write ${{{name}:-default}} for a default)"
            )
        return text

    def name(self, value: Any, where: tuple[int, int], what: str) -> str | None:
        try:
            return validate_name(value, what)
        except InvalidName as exc:
            self.problem(where, str(exc))
            return None


def read(path: Path, environ: Mapping[str, str]) -> Weave:
    """Parse and validate `path`; raise WeaveInvalid listing every problem."""
    source = str(path)
    try:
        text = read_bounded(path, CONFIG_LIMIT, "config file").decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    if "\t" in text and _tab_indented(text):
        line = next(i for i, ln in enumerate(text.splitlines(), 1) if ln.startswith("\t"))
        raise WeaveInvalid(source, [Problem(line, 1, "indented with a tab; YAML needs spaces")])
    try:
        raw = read_yaml(text, source)
    except YamlError as exc:
        place = Problem(exc.line or 1, exc.column or 1, exc.problem)
        raise WeaveInvalid(source, [place]) from None
    if raw is None:
        raise WeaveInvalid(
            source, [Problem(1, 1, "the file is empty: add `version: 1` and agents")]
        )
    reader = _Reader(source, environ, path.resolve().parent)
    weave = _read_top(reader, path, raw)
    problems = reader.problems + validate(weave)
    if problems:
        raise WeaveInvalid(source, problems)
    return weave


def _tab_indented(text: str) -> bool:
    return any(line.startswith("\t") for line in text.splitlines())


def _read_top(r: _Reader, path: Path, raw: Any) -> Weave:
    if not isinstance(raw, LineDict):
        r.problem(r.at(raw), "the top level must be a mapping with `version`, `agents`, `pipes`")
        return Weave(path, {}, {})
    r.keys(raw, TOP_KEYS, "loom.yml")
    version = raw.get("version")
    if version is None:
        r.problem((1, 1), "`version: 1` is missing")
    elif version != 1 or isinstance(version, bool):
        r.problem(r.value_at(raw, "version"), f"unsupported version {version!r}; this loom reads 1")
    home = r.string(raw, "home", "home") if "home" in raw else None
    project = _read_project(r, path, raw)
    lines: dict[str, int] = {}
    pipes = _read_pipes(r, raw, lines)
    agents = _read_agents(r, raw, lines, pipes)
    retention = _read_gc(r, raw)
    cluster = _read_cluster(r, raw) if "cluster" in raw else None
    broken = frozenset(n for n in lines if n not in pipes and n not in agents)
    return Weave(
        path,
        pipes,
        agents,
        home=home,
        project=project or "",
        retention=retention,
        cluster=cluster,
        lines=lines,
        broken=broken,
    )


def _read_project(r: _Reader, path: Path, raw: LineDict) -> str | None:
    """`name:`, or else the name of the file's folder made into a loom name (as compose does)."""
    if "name" in raw:
        value = r.string(raw, "name", "`name`")
        return r.name(value, r.value_at(raw, "name"), "project name") if value else None
    folder = path.resolve().parent.name
    project = default_project(folder)
    if project is None:
        r.problem(
            (1, 1),
            f"the folder name {folder!r} cannot be a project name ([a-z][a-z0-9-]*); "
            "set one with `name:`",
        )
    return project


def default_project(folder: str) -> str | None:
    """`My_App.v2` -> `my-app-v2`: lower case, other characters as `-`; None if nothing is left."""
    text = re.sub(r"[^a-z0-9-]+", "-", folder.lower())
    text = re.sub(r"^[^a-z]+", "", text)[:64].rstrip("-")
    try:
        return validate_name(text, "project name")
    except InvalidName:
        return None


def _read_pipes(r: _Reader, raw: LineDict, lines: dict[str, int]) -> dict[str, PipeDef]:
    section = raw.get("pipes")
    if section is None:
        return {}
    if not isinstance(section, LineDict):
        r.problem(r.value_at(raw, "pipes"), "`pipes` must be a mapping of name: definition")
        return {}
    pipes: dict[str, PipeDef] = {}
    for key, body in section.items():
        where = r.key_at(section, str(key))
        name = r.name(key, where, "pipe name") if isinstance(key, str) else None
        if name is None:
            if not isinstance(key, str):
                r.problem(where, f"pipe name read as {key!r}; {YAML_BOOLEANS}")
            continue
        lines[name] = where[0]
        try:
            pipes[name] = parse_definition(body, name=name, source=r.source)
        except DefinitionInvalid as exc:
            for problem in exc.problems:
                at = (problem.line, problem.column or 1) if problem.line else where
                r.problem(at, problem.message)
        except ConfigError as exc:
            found, message = _split_location(str(exc), r.source)
            r.problem((found, 1) if found else where, message)
    return pipes


def _split_location(message: str, source: str) -> tuple[int | None, str]:
    """Pipe errors start with `source:LINE:`; return the line and the rest."""
    if not message.startswith(f"{source}:"):
        return None, message
    rest = message[len(source) + 1 :]
    line, sep, tail = rest.partition(":")
    if sep and line.strip().isdigit():
        return int(line), tail.strip()
    return None, rest.strip()


def _read_agents(
    r: _Reader, raw: LineDict, lines: dict[str, int], pipes: dict[str, PipeDef]
) -> dict[str, AgentDef]:
    section = raw.get("agents")
    if section is None:
        return {}
    if not isinstance(section, LineList):
        r.problem(r.value_at(raw, "agents"), "`agents` must be a list of agents")
        return {}
    agents: dict[str, AgentDef] = {}
    for index, block in enumerate(section):
        where = section.item_marks[index] if index < len(section.item_marks) else r.at(section)
        if not isinstance(block, LineDict):
            r.problem(where, "each agent must be a mapping with at least `name` and `model`")
            continue
        agent = _read_agent(r, block, where)
        if agent is None:
            raw_name = block.get("name")
            if isinstance(raw_name, str):
                lines.setdefault(raw_name, where[0])
            continue
        if agent.name in agents or agent.name in pipes:
            first = lines.get(agent.name, 0)
            kind = "an agent" if agent.name in agents else "a pipe"
            r.problem(
                r.value_at(block, "name"),
                f"'{agent.name}' is already {kind} (line {first}); names are shared by agents "
                "and pipes",
            )
            continue
        agents[agent.name] = agent
        lines[agent.name] = where[0]
    return agents


def _read_agent(r: _Reader, block: LineDict, where: tuple[int, int]) -> AgentDef | None:
    r.keys(block, AGENT_KEYS, "an agent")
    if "name" not in block:
        r.problem(where, "an agent needs a `name`")
        return None
    raw_name = block.get("name")
    name = (
        r.name(raw_name, r.value_at(block, "name"), "agent name")
        if isinstance(raw_name, str)
        else None
    )
    if name is None:
        if not isinstance(raw_name, str):
            r.string(block, "name", "`name`")
        return None
    model = r.string(block, "model", f"model of '{name}'") if "model" in block else None
    if "model" not in block:
        r.problem(where, f"agent '{name}' needs a `model` (for example `echo`)")
    elif model:
        try:
            provider_of(model)
        except UsageError as exc:
            r.problem(r.value_at(block, "model"), str(exc))
    system = r.string(block, "system", "`system`") if "system" in block else None
    if "system_file" in block:
        if system is not None:
            r.problem(r.key_at(block, "system_file"), "give `system` or `system_file`, not both")
        path_text = r.string(block, "system_file", "`system_file`")
        if path_text is not None:
            system = _read_system_file(r, block, path_text)
    restart = "always"
    if "restart" in block:
        value = r.string(block, "restart", "`restart`")
        if value is not None and value not in POLICIES:
            r.problem(r.value_at(block, "restart"), f"restart must be one of {', '.join(POLICIES)}")
        restart = value or restart
    env = _read_env(r, block)
    inbound = _read_inbound(r, block, name)
    memory = _read_memory(r, block)
    tools = _read_tools(r, block)
    concurrency = 1
    if "concurrency" in block:
        problem = concurrency_problem(block["concurrency"])
        if problem is not None:
            r.problem(r.value_at(block, "concurrency"), problem)
        else:
            concurrency = block["concurrency"]
    rate = None
    if "rate" in block:
        rate = r.string(block, "rate", "`rate`")
        if rate is not None:
            try:
                parse_rate(rate)
            except UsageError as exc:
                r.problem(r.value_at(block, "rate"), str(exc))
    schema = _read_schema(r, block) if "schema" in block else None
    input_mode = DEFAULT_INPUT
    if "input" in block:
        value = r.string(block, "input", "`input`")
        problem = check_input(value) if value is not None else None
        if problem is not None:
            r.problem(r.value_at(block, "input"), problem)
        elif value is not None:
            input_mode = value
    return AgentDef(
        name=name,
        model=model or "",
        system=system,
        restart=restart,
        env=env,
        inbound=inbound,
        memory=memory,
        tools=tools,
        concurrency=concurrency,
        rate=rate,
        schema=schema,
        options=_read_options(r, block, model) if "options" in block else {},
        input=input_mode,
        hosts=_read_hosts(r, block),
        line=where[0],
    )


def _read_system_file(r: _Reader, block: LineDict, text: str) -> str | None:
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = r.base / path
    try:
        return read_bounded_text(path, PROMPT_LIMIT, "system_file")
    except OSError as exc:
        r.problem(r.value_at(block, "system_file"), f"cannot read {text}: {exc.strerror}")
    except UsageError as exc:
        # A device, a FIFO or a huge file is refused at once, with its place, rather than
        # listed among the problems: the file itself is what the user has to change.
        where = Problem(*r.value_at(block, "system_file"), str(exc))
        raise UsageError(where.render(r.source)) from None
    return None


def _read_schema(r: _Reader, block: LineDict) -> dict[str, Any] | None:
    """`schema:` as a mapping written in place, or a JSON file's path (relative to loom.yml)."""
    where = r.value_at(block, "schema")
    value = block["schema"]
    try:
        if isinstance(value, str):
            text = r.string(block, "schema", "`schema`")
            if text is None:
                return None
            path = Path(text).expanduser()
            return load_schema(str(path if path.is_absolute() else r.base / path), "schema")
        if not isinstance(value, LineDict):
            r.problem(where, "`schema` must be a JSON Schema (a mapping) or a JSON file's path")
            return None
        schema = json.loads(json.dumps(value))
        check_schema(schema, "`schema`")
        return dict(schema)
    except UsageError as exc:
        r.problem(where, str(exc))
    return None


def _read_options(r: _Reader, block: LineDict, model: str | None) -> dict[str, Any]:
    """`options:`, a mapping of model options, each checked against the model's provider."""
    raw = block["options"]
    if not isinstance(raw, LineDict):
        r.problem(
            r.value_at(block, "options"), "`options` must be a mapping, e.g. {temperature: 0.2}"
        )
        return {}
    options: dict[str, Any] = {}
    for key, value in raw.items():
        if not isinstance(key, str):
            r.problem(
                r.key_at(raw, str(key)), f"`options` has a key read as {key!r}; {YAML_BOOLEANS}"
            )
            continue
        if isinstance(value, str):
            value = r.string(raw, key, f"option '{key}'")
        elif value is None:
            r.problem(r.value_at(raw, key), f"option '{key}' has no value")
            continue
        else:
            value = json.loads(json.dumps(value))
        try:
            problem = option_problem(model, key, value) if model else None
        except UsageError:
            problem = None  # the unknown provider is reported at `model:`
        if problem is not None:
            unknown = problem.startswith("unknown option")
            at = r.key_at(raw, key) if unknown else r.value_at(raw, key)
            r.problem(at, problem)
        options[key] = value
    return options


def _read_env(r: _Reader, block: LineDict) -> dict[str, str]:
    if "env" not in block:
        return {}
    env = block["env"]
    if not isinstance(env, LineDict):
        r.problem(r.value_at(block, "env"), "`env` must be a mapping of NAME: value")
        return {}
    out: dict[str, str] = {}
    for key in env:
        if not isinstance(key, str):
            r.problem(r.key_at(env, str(key)), f"env key read as {key!r}; {YAML_BOOLEANS}")
            continue
        value = r.string(env, key, f"env {key}")
        if value is None:
            continue
        problem = env_entry_problem(key, value)
        if problem is not None:
            r.problem(r.key_at(env, key), problem)
            continue
        out[key] = value
    return out


def _read_inbound(r: _Reader, block: LineDict, agent: str) -> tuple[Inbound, ...]:
    if "from" not in block:
        return ()
    raw = block["from"]
    entries = raw if isinstance(raw, list) else [raw]
    marks = raw.item_marks if isinstance(raw, LineList) else [r.value_at(block, "from")]
    found: list[Inbound] = []
    for index, entry in enumerate(entries):
        where = marks[index] if index < len(marks) else r.value_at(block, "from")
        if isinstance(entry, str):
            found.append(Inbound(entry, line=where[0], column=where[1]))
            continue
        if not isinstance(entry, LineDict):
            r.problem(where, "a `from` entry is an agent name or {agent, pipe, when}")
            continue
        r.keys(entry, FROM_KEYS, "a `from` entry")
        if "agent" not in entry:
            r.problem(where, "a `from` entry needs `agent` (the source)")
            continue
        source = r.string(entry, "agent", "`agent`", expand_vars=False)
        pipe = r.string(entry, "pipe", "`pipe`", expand_vars=False) if "pipe" in entry else None
        when = r.string(entry, "when", "`when`") if "when" in entry else None
        when_at = r.value_at(entry, "when") if when is not None else None
        # After `${VAR}` expansion an offset into the text no longer maps onto the file.
        when_text = entry.text_marks.get("when") if when == entry.get("when") else None
        limit = entry.get("limit", DEFAULT_LIMIT)
        if type(limit) is not int or limit < 1:
            r.problem(r.value_at(entry, "limit"), "`limit` must be a whole number >= 1")
            limit = DEFAULT_LIMIT
        if source is not None:
            found.append(
                Inbound(
                    source,
                    pipe,
                    when,
                    line=where[0],
                    column=where[1],
                    when_at=when_at,
                    when_text=when_text,
                    limit=limit,
                )
            )
    return tuple(found)


def _read_memory(r: _Reader, block: LineDict) -> dict[str, str]:
    if "memory" not in block:
        return {}
    memory = block["memory"]
    if not isinstance(memory, LineDict):
        r.problem(r.value_at(block, "memory"), "`memory` must map file names to their text")
        return {}
    out: dict[str, str] = {}
    for key in memory:
        where = r.key_at(memory, str(key))
        if not isinstance(key, str) or "/" in key or key.startswith(".") or "\0" in key:
            r.problem(where, f"memory file name {key!r} must be a plain file name")
            continue
        value = r.string(memory, key, f"memory {key}")
        if value is not None:
            out[key] = value
    return out


def _read_tools(r: _Reader, block: LineDict) -> tuple[str, ...] | None:
    if "tools" not in block:
        return None
    tools = block["tools"]
    if not isinstance(tools, list) or not all(isinstance(t, str) for t in tools):
        r.problem(r.value_at(block, "tools"), "`tools` must be a list of tool names")
        return None
    return tuple(tools)


def _read_hosts(r: _Reader, block: LineDict) -> tuple[str, ...]:
    if "hosts" not in block:
        return ()
    raw = block["hosts"]
    where = r.value_at(block, "hosts")
    if not isinstance(raw, list) or not raw or not all(isinstance(h, str) for h in raw):
        r.problem(where, "`hosts` must be a list of host names, like [h1, h2]")
        return ()
    hosts = [r.name(h, where, "host name") for h in raw]
    if len(set(hosts)) != len(hosts):
        r.problem(where, "`hosts` names a host twice")
    return tuple(h for h in dict.fromkeys(hosts) if h is not None)


def _read_cluster(r: _Reader, raw: LineDict) -> Cluster | None:
    """`cluster: {nats: URL or [URL, ...], creds: FILE, ca: FILE}`, variables expanded."""
    section = raw.get("cluster")
    where = r.value_at(raw, "cluster")
    if not isinstance(section, LineDict) or "nats" not in section:
        r.problem(where, "`cluster` must be a mapping with `nats: URL` (or a list of URLs)")
        return None
    r.keys(section, CLUSTER_KEYS, "cluster")
    value = section["nats"]
    at = r.value_at(section, "nats")
    servers: list[str] = []
    if isinstance(value, list):
        for item in value:
            text, missing = expand(item, r.environ) if isinstance(item, str) else ("", [])
            if not isinstance(item, str):
                r.problem(at, "`cluster.nats` must be a URL or a list of URLs")
            servers.extend(u.strip() for u in text.split(",") if u.strip())
            for name in missing:
                r.problem(at, f"${{{name}}} is not set (write ${{{name}:-default}} for a default)")
    else:
        one = r.string(section, "nats", "`cluster.nats`")
        servers = [u.strip() for u in (one or "").split(",") if u.strip()]
    for url in servers:
        problem = url_problem(url)
        if problem:
            r.problem(at, problem)
    if not servers:
        r.problem(at, "`cluster.nats` names no server")
    creds = r.string(section, "creds", "`cluster.creds`") if "creds" in section else None
    ca = r.string(section, "ca", "`cluster.ca`") if "ca" in section else None
    for key, path in (("creds", creds), ("ca", ca)):
        if path and not Path(path).expanduser().is_file():
            r.problem(r.value_at(section, key), f"`cluster.{key}`: {path} is not a file")
    replicas = section.get("replicas", 1)
    if type(replicas) is not int or not 1 <= replicas <= 5:
        r.problem(r.value_at(section, "replicas"), "`cluster.replicas` must be 1 to 5")
        replicas = 1
    return Cluster(tuple(servers), creds=creds, ca=ca, replicas=replicas, line=where[0])


def url_problem(url: str) -> str | None:
    """What is wrong with one NATS server URL (`nats://host:port`, `tls://...`), if anything."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, hostport = rest.rpartition("@")
    # The URL goes into cluster.json and error text: never with its credentials.
    shown = f"{scheme}{sep}***@{hostport}" if at else url
    if not sep or scheme not in ("nats", "tls"):
        return f"NATS server {shown!r} must start with nats:// or tls://"
    if at:
        return (
            f"NATS server {shown!r} holds credentials, which would be written to "
            "cluster.json: set LOOM_NATS_USER and LOOM_NATS_PASSWORD (or LOOM_NATS_TOKEN) "
            "where the supervisor starts, or use `creds:`"
        )
    hostport = hostport.rstrip("/")
    host, _, port = hostport.rpartition(":") if ":" in hostport else (hostport, "", "")
    if not host or (port and not port.isdigit()):
        return f"NATS server {shown!r} needs a host (and a numeric port), like nats://10.0.0.5:4222"
    return None


def _read_gc(r: _Reader, raw: LineDict) -> dict[str, str]:
    gc = raw.get("gc")
    if gc is None:
        return {}
    if not isinstance(gc, LineDict):
        r.problem(r.value_at(raw, "gc"), "`gc` must be a mapping with `retention`")
        return {}
    r.keys(gc, GC_KEYS, "gc")
    retention = gc.get("retention")
    if retention is None:
        return {}
    if not isinstance(retention, LineDict):
        r.problem(r.value_at(gc, "retention"), "`gc.retention` must be a mapping")
        return {}
    out: dict[str, str] = {}
    for key in retention:
        raw_value = retention[key]
        if str(key) in COUNT_KEYS and isinstance(raw_value, int):
            value: str | None = str(raw_value)  # `dedupe_keys: 10000` needs no quotes
        else:
            value = r.string(retention, str(key), f"gc.retention.{key}")
        if value is None:
            continue
        try:
            check(str(key), value)
        except ValueError as exc:
            r.problem(r.key_at(retention, str(key)), str(exc))
            continue
        out[str(key)] = value
    return out
