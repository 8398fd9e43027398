"""Pipe definitions: parsed from YAML or JSON, validated, found by name, saved (SPEC 6, 9).

Both step forms give the same OperatorSpec: the short form `- map: EXPR` (a plain value
fills the operator's main argument, a mapping gives all arguments, sibling keys add
more) and the long form `- operator: command` + `cmd: ...` (other keys are arguments).
A definition is the list of steps, or the node form `{from, to, operators}`.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from loom.errors import InvalidName, NotFound
from loom.names import INSTANCE_RE, validate_name, validate_process_name
from loom.pipeline.catalog import catalog_dir
from loom.pipeline.errors import ArgError
from loom.pipeline.operators import Operator, lookup
from loom.pipeline.operators.registry import REGISTRY
from loom.pipeline.spec import (
    ArgMark,
    DefinitionInvalid,
    DefinitionProblem,
    OperatorSpec,
    PipeDef,
    Place,
    arg_config_error,
    config_error,
)
from loom.pipeline.yaml_lines import read_yaml
from loom.store import atomic
from loom.store import home as homes
from loom.store.files import CONFIG_LIMIT, load_json, read_bounded, read_bounded_text
from loom.store.home import MAX_CONCURRENCY, concurrency_problem

__all__ = [
    "build_operator",
    "catalog_dir",
    "definition_path",
    "instance_definition_path",
    "load_definition",
    "load_file",
    "parse_definition",
    "parse_step",
    "save_definition",
]

NODE_KEYS = ("concurrency", "description", "from", "name", "operators", "to")
LONG_FORM_KEY = "operator"
CONFIG_FILE = "config.json"
_T = TypeVar("_T")


def build_operator(spec: OperatorSpec, pipe: str = "pipe", source: str = "<memory>") -> Operator:
    """Instantiate (and so validate) the operator of `spec`; ConfigError when it is invalid."""
    try:
        return lookup(spec.kind)(spec)
    except ArgError as exc:
        raise arg_config_error(source, pipe, spec, exc) from None


def parse_definition(data: Any, *, name: str, source: str = "<memory>") -> PipeDef:
    """Validate a definition: YAML text, or an already decoded list or node-form mapping.

    Every problem found is collected (each node key, each step and each operator) and
    raised together as one DefinitionInvalid, so a linter run shows them all.
    """
    if isinstance(data, str):
        data = read_yaml(data, source)
    found = _Problems(source)
    at = _node_place(data)
    inputs: tuple[str, ...] = ()
    to: tuple[str, ...] = ()
    description = None
    concurrency = 1
    marks: dict[str, tuple[int, int]] = {}
    if isinstance(data, Mapping):
        _check_node_keys(data, name, found)
        inputs = found.collect(lambda: _names(data, "from", name, source), ())
        to = found.collect(lambda: _names(data, "to", name, source), ())
        value_marks = getattr(data, "value_marks", {})
        marks = {k: value_marks[k] for k in ("from", "to") if k in value_marks}
        description = data.get("description")
        if description is not None and not isinstance(description, str):
            found.add(
                config_error(
                    source,
                    name,
                    "must be a string",
                    at=_value_place(data, "description"),
                    key="description",
                )
            )
        concurrency = found.collect(lambda: _concurrency(data, name, source), 1)
        if "operators" not in data:
            found.add(config_error(source, name, "the 'operators' list is required", at=at))
            found.check()
        steps = data["operators"]
        if not isinstance(steps, list) or not steps:
            at = _value_place(data, "operators")
    elif isinstance(data, list):
        steps = data
    else:
        raise config_error(
            source,
            name,
            "a pipe is a list of operators, or a mapping with an 'operators' list",
            at=at,
        )
    if not isinstance(steps, list) or not steps:
        found.add(config_error(source, name, "a pipe needs at least one operator", at=at))
        found.check()
    # A step that is a plain scalar has no line of its own; its list remembers it.
    item_marks = getattr(steps, "item_marks", [])
    specs: list[OperatorSpec] = []
    for i, step in enumerate(steps):
        where = item_marks[i] if i < len(item_marks) else (None, None)
        try:
            spec = parse_step(step, i, pipe=name, source=source, line=where[0], column=where[1])
            specs.append(spec)
            _check_operator(spec, name, source, concurrency)
        except DefinitionInvalid as exc:
            found.add(exc)
    found.check()
    return PipeDef(name, tuple(specs), source, inputs, to, description, concurrency, marks)


class _Problems:
    """The problems of one definition, gathered as its parts are checked."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[DefinitionProblem] = []

    def add(self, error: DefinitionInvalid) -> None:
        self.problems.extend(error.problems)

    def collect(self, check: Callable[[], _T], default: _T) -> _T:
        """`check()`, or `default` with its problems noted."""
        try:
            return check()
        except DefinitionInvalid as exc:
            self.add(exc)
            return default

    def check(self) -> None:
        if self.problems:
            raise DefinitionInvalid(self.source, self.problems)


def _check_operator(spec: OperatorSpec, name: str, source: str, concurrency: int) -> None:
    op = build_operator(spec, name, source)
    op.close()
    if concurrency > 1 and op.stateful:
        raise config_error(
            source,
            name,
            f"concurrency {concurrency} needs operators that keep no state, and "
            f"{spec.kind} does: its state depends on the order messages arrive in; "
            "remove 'concurrency' or this operator",
            line=spec.line,
            column=spec.column,
            spec=spec,
        )


def _node_place(data: Any) -> Place:
    return (getattr(data, "line", None), getattr(data, "column", None))


def _key_place(data: Any, key: str) -> Place:
    mark = getattr(data, "key_marks", {}).get(key)
    return mark if mark else _node_place(data)


def _value_place(data: Any, key: str) -> Place:
    mark = getattr(data, "value_marks", {}).get(key)
    return mark if mark else _key_place(data, key)


def _concurrency(data: Mapping[Any, Any], name: str, source: str) -> int:
    value = data.get("concurrency", 1)
    if concurrency_problem(value) is None:
        return int(value)
    raise config_error(
        source,
        name,
        f"must be a whole number from 1 to {MAX_CONCURRENCY}, got {value!r}",
        at=_value_place(data, "concurrency"),
        key="concurrency",
    )


def _check_node_keys(data: Mapping[Any, Any], name: str, found: _Problems) -> None:
    for key in data:
        if key not in NODE_KEYS:
            close = difflib.get_close_matches(str(key), NODE_KEYS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            found.add(
                config_error(
                    found.source,
                    name,
                    f"unknown key{hint}; expected: {', '.join(NODE_KEYS)}",
                    at=_key_place(data, str(key)),
                    key=str(key),
                )
            )


def _names(data: Mapping[Any, Any], key: str, name: str, source: str) -> tuple[str, ...]:
    value = data.get(key)
    if value is None:
        return ()
    at = _value_place(data, key)
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise config_error(source, name, "must be a name or a list of names", at=at, key=key)
    item_marks = getattr(value, "item_marks", [])
    for i, item in enumerate(items):
        try:
            validate_name(item, "agent or pipe name")
        except InvalidName as exc:
            if i < len(item_marks):
                at = item_marks[i]
            raise config_error(source, name, str(exc), at=at, key=key) from None
    return tuple(items)


def parse_step(
    step: Any,
    index: int,
    *,
    pipe: str,
    source: str,
    line: int | None = None,
    column: int | None = None,
) -> OperatorSpec:
    """Normalise one step (short or long form) into an OperatorSpec; it is not validated yet.

    `line` and `column` are the step's place when it cannot say (a plain scalar)."""
    line = getattr(step, "line", None) or line
    column = getattr(step, "column", None) or column
    placeholder = OperatorSpec("", {}, index, line, column=column)
    if not isinstance(step, Mapping) or not step:
        raise config_error(
            source,
            pipe,
            "must be a mapping such as {map: EXPR} or {operator: NAME, ...}",
            line=line,
            column=column,
            spec=placeholder,
        )
    key_lines: dict[str, int] = dict(getattr(step, "key_lines", {}))
    marks = _marks(step)
    if LONG_FORM_KEY in step:
        kind = step[LONG_FORM_KEY]
        if not isinstance(kind, str):
            raise config_error(
                source,
                pipe,
                "must be an operator name",
                at=_value_place(step, LONG_FORM_KEY),
                spec=placeholder,
                key=LONG_FORM_KEY,
            )
        long_args = {str(k): v for k, v in step.items() if k != LONG_FORM_KEY}
        marks.pop(LONG_FORM_KEY, None)
        spec = OperatorSpec(kind, long_args, index, line, key_lines, column, marks)
        _known(spec, pipe, source, _value_place(step, LONG_FORM_KEY))
        return spec
    kinds = [k for k in step if k in REGISTRY]
    if len(kinds) > 1:
        raise config_error(
            source,
            pipe,
            f"one step holds two operators ({' and '.join(map(str, kinds))}); "
            "give each its own list item",
            at=_key_place(step, str(kinds[1])),
            spec=placeholder,
        )
    if not kinds:
        # Not a built-in: the first key is meant as the operator, maybe one a plugin adds.
        guess = str(next(iter(step)))
        _known(OperatorSpec(guess, {}, index, line), pipe, source, _key_place(step, guess))
        kinds = [guess]
    kind = str(kinds[0])
    cls = lookup(kind)
    value = step[kind]
    args: dict[str, Any] = {}
    here = OperatorSpec(kind, {}, index, line, column=column)
    if isinstance(value, Mapping):
        args.update({str(k): v for k, v in value.items()})
        key_lines.update(getattr(value, "key_lines", {}))
        marks.pop(kind, None)
        marks.update(_marks(value))
    elif cls.primary is None:
        raise config_error(
            source,
            pipe,
            f"'{kind}' takes a mapping of arguments, got {value!r}",
            at=_value_place(step, kind),
            spec=here,
        )
    else:
        args[cls.primary] = value
        key_lines[cls.primary] = key_lines.get(kind, line or 0)
        if kind in marks:
            marks[cls.primary] = marks.pop(kind)
    for key, extra in step.items():
        if key == kind:
            continue
        if str(key) in args:
            raise config_error(
                source,
                pipe,
                "given twice",
                at=_key_place(step, str(key)),
                spec=here,
                key=str(key),
            )
        args[str(key)] = extra
    return OperatorSpec(kind, args, index, line, key_lines, column, marks)


def _marks(mapping: Any) -> dict[str, ArgMark]:
    """The ArgMark of every key of a YAML mapping (none for JSON or in-memory data)."""
    keys = getattr(mapping, "key_marks", {})
    values = getattr(mapping, "value_marks", {})
    texts = getattr(mapping, "text_marks", {})
    return {
        key: ArgMark(key, mark, values.get(key, mark), texts.get(key)) for key, mark in keys.items()
    }


def _known(spec: OperatorSpec, pipe: str, source: str, at: Place) -> None:
    try:
        lookup(spec.kind)
    except ArgError as exc:
        where = OperatorSpec("", {}, spec.index, spec.line)
        raise config_error(source, pipe, exc.problem, at=at, spec=where) from None


# -- files -------------------------------------------------------------------------
def load_file(path: Path, name: str | None = None) -> PipeDef:
    """Read one definition file: `.json` as JSON, anything else as YAML."""
    if name is None:
        name = path.parent.name if path.name == CONFIG_FILE else path.stem
    try:
        text = read_bounded(path, CONFIG_LIMIT, "pipe definition").decode("utf-8")
    except FileNotFoundError:
        raise NotFound(f"{path}: no such pipe definition file") from None
    except (IsADirectoryError, UnicodeDecodeError) as exc:
        raise NotFound(f"{path}: cannot read a pipe definition ({exc})") from None
    if path.suffix == ".json":
        try:
            data = load_json(text)
        except ValueError as exc:
            line, column = getattr(exc, "lineno", None), getattr(exc, "colno", None)
            raise config_error(
                str(path), name, f"not valid JSON: {exc}", line=line, column=column
            ) from None
        return parse_definition(data, name=name, source=str(path))
    return parse_definition(read_yaml(text, str(path)), name=name, source=str(path))


def definition_path(name: str, home: Path) -> Path:
    """`$LOOM_HOME/pipes/<name>/config.json`."""
    return home / "pipes" / validate_name(name, "pipe name") / CONFIG_FILE


def instance_definition_path(instance: str, home: Path) -> Path:
    """Where an instance's definition lives: its own folder, or its pipe's for
    `<pipe>~<src>→<dst>`."""
    instance = validate_process_name(instance)
    m = INSTANCE_RE.fullmatch(instance)
    return definition_path(m.group(1) if m else instance, home)


def load_definition(ref: str, home: Path | None = None, *, cwd: Path | None = None) -> PipeDef:
    """Resolve `ref`: a .yml/.yaml/.json path, or a pipe name looked up in order in
    `./pipes/<name>.yml|.yaml`, the `pipes:` section of `./loom.yml|.yaml`,
    `$LOOM_HOME/pipes/<name>/config.json`, and the packaged catalog."""
    base = cwd or Path.cwd()
    if "/" in ref or ref.endswith((".yml", ".yaml", ".json")):
        return load_file(base / Path(ref).expanduser())
    name = validate_name(ref, "pipe name")
    # exists(), not is_file(): a device or FIFO in the user's own folder is reported by
    # load_file, not silently passed over for a definition of the same name elsewhere.
    for ext in (".yml", ".yaml"):
        path = base / "pipes" / f"{name}{ext}"
        if path.exists():
            return load_file(path, name)
    for config in ("loom.yml", "loom.yaml"):
        path = base / config
        if path.exists():
            found = _from_weave(path, name)
            if found is not None:
                return found
    root = homes.home(home)
    path = definition_path(name, root)
    if path.is_file():
        return load_file(path, name)
    path = catalog_dir() / f"{name}.yml"
    if path.is_file():
        return load_file(path, name)
    raise NotFound(
        f"no pipe named '{name}': looked in ./pipes/{name}.yml, ./loom.yml, "
        f"{root}/pipes/{name}/config.json and the catalog; see 'loom pipes'"
    )


def _from_weave(path: Path, name: str) -> PipeDef | None:
    data = read_yaml(read_bounded_text(path, CONFIG_LIMIT, "config file"), str(path))
    pipes = data.get("pipes") if isinstance(data, Mapping) else None
    if not isinstance(pipes, Mapping) or name not in pipes:
        return None
    return parse_definition(pipes[name], name=name, source=str(path))


def save_definition(defn: PipeDef, home: Path | None = None, *, name: str | None = None) -> Path:
    """Write `defn` as `$LOOM_HOME/pipes/<name>/config.json` (atomic); return the path."""
    path = definition_path(name or defn.name, homes.home(home))
    atomic.make_private_dir(path.parent)
    data = {**defn.to_json_data(), "name": path.parent.name}
    text = json.dumps(data, ensure_ascii=False, indent=2) + "\n"
    atomic.write_text(path, text)
    return path
