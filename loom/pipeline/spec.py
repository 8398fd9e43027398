"""The one model every definition form is parsed into: PipeDef and OperatorSpec."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from loom.errors import ConfigError
from loom.pipeline.errors import ArgError


@dataclass(frozen=True)
class ArgMark:
    """Where one argument of a step sits in its YAML file, and its key as written there.

    `written` differs from the argument's name in the short form: in `- map: EXPR` the
    argument `expr` is written `map`. `text` is where the value's characters start when
    an offset into the value is also a column of the file (a one-line scalar).
    """

    written: str
    key: tuple[int, int]
    value: tuple[int, int]
    text: tuple[int, int] | None = None


@dataclass(frozen=True)
class OperatorSpec:
    """One step of a pipe: its operator `kind` and normalised `args`.

    `index` is the 0-based position in the pipe; users see `number` (1-based) in labels,
    error messages, `steps/<number>/` and `state/<number>-<kind>/`. `line` and `lines`
    (per argument key) point into the source file when it was YAML; so do `column` and
    `marks`, which also remember each key as the file writes it.
    """

    kind: str
    args: Mapping[str, Any] = field(default_factory=dict, hash=False)
    index: int = 0
    line: int | None = field(default=None, compare=False)
    lines: Mapping[str, int] = field(default_factory=dict, compare=False, hash=False)
    column: int | None = field(default=None, compare=False)
    marks: Mapping[str, ArgMark] = field(default_factory=dict, compare=False, hash=False)

    def written(self, key: str) -> str:
        """Argument `key` as the file spells it (`map` for the short form's `expr`)."""
        mark = self.marks.get(key)
        return mark.written if mark is not None else key

    @property
    def number(self) -> int:
        return self.index + 1

    @property
    def label(self) -> str:
        """`<number>:<kind>`, e.g. `2:filter`; the key of drop and error counters."""
        return f"{self.number}:{self.kind}"

    def to_json_data(self) -> dict[str, Any]:
        """The long form, as stored in config.json: `{"operator": kind, **args}`."""
        return {"operator": self.kind, **_plain(self.args)}


@dataclass(frozen=True)
class PipeDef:
    """A named, validated chain of operators; `source` says where it was read from.

    `inputs` and `to` come from the node form (`from:`/`to:`) and are empty otherwise;
    so does `concurrency`, how many messages the queued process keeps in flight at once.
    """

    name: str
    operators: tuple[OperatorSpec, ...]
    source: str = "<memory>"
    inputs: tuple[str, ...] = ()
    to: tuple[str, ...] = ()
    description: str | None = None
    concurrency: int = 1
    # (line, column) of the node form's `from` and `to` values, for messages about them.
    marks: Mapping[str, tuple[int, int]] = field(default_factory=dict, compare=False, hash=False)

    def to_json_data(self) -> dict[str, Any]:
        """The config.json document for this definition."""
        data: dict[str, Any] = {"name": self.name}
        if self.description:
            data["description"] = self.description
        if self.inputs:
            data["from"] = list(self.inputs)
        if self.to:
            data["to"] = list(self.to)
        if self.concurrency != 1:  # left out at its default: older files read the same
            data["concurrency"] = self.concurrency
        data["operators"] = [op.to_json_data() for op in self.operators]
        return data


def _plain(value: Any) -> Any:
    """Plain dicts and lists (the YAML loader's line-tracking subclasses stripped)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# (line, column) in a definition's file, 1-based; either may be unknown.
Place = tuple[int | None, int | None]


@dataclass(frozen=True)
class DefinitionProblem:
    """One problem of a pipe definition: where it is and what is wrong, in the file's words."""

    line: int | None
    column: int | None
    message: str

    def render(self, source: str) -> str:
        """`FILE:LINE:COL: message`, with what of the place is known."""
        if self.line is None:
            return f"{source}: {self.message}"
        return f"{source}:{self.line}:{self.column or 1}: {self.message}"


class DefinitionInvalid(ConfigError):
    """A pipe definition with problems; `problems` holds every one found, in file order."""

    def __init__(self, source: str, problems: list[DefinitionProblem]) -> None:
        self.source = source
        self.problems = sorted(problems, key=lambda p: (p.line or 0, p.column or 0))
        super().__init__("\n".join(p.render(source) for p in self.problems))


def config_error(
    source: str,
    pipe: str,
    problem: str,
    *,
    line: int | None = None,
    column: int | None = None,
    at: Place | None = None,
    spec: OperatorSpec | None = None,
    key: str | None = None,
) -> DefinitionInvalid:
    """A one-problem DefinitionInvalid naming the place, the operator and the key as the
    file writes it (SPEC 9)."""
    parts = [f"pipe '{pipe}'"]
    if spec is not None:
        parts.append(
            f"operator {spec.number} ({spec.kind})" if spec.kind else f"operator {spec.number}"
        )
    if key and not (spec is not None and key == spec.kind):  # `- map: EXPR`: no `key 'map'`
        parts.append(f"key '{key}'")
    message = f"{', '.join(parts)}: {problem}"
    if at is not None:
        line, column = at
    return DefinitionInvalid(source, [DefinitionProblem(line, column, message)])


def arg_config_error(
    source: str, pipe: str, spec: OperatorSpec, exc: ArgError
) -> DefinitionInvalid:
    """Turn an operator's ArgError into a DefinitionInvalid at the offending key or value."""
    line, column = _place(spec, exc)
    key = spec.written(exc.key) if exc.key else None
    return config_error(source, pipe, exc.problem, line=line, column=column, spec=spec, key=key)


def _place(spec: OperatorSpec, exc: ArgError) -> tuple[int | None, int | None]:
    if exc.column is not None:
        return exc.line, exc.column
    mark = spec.marks.get(exc.key) if exc.key else None
    # An operator may point at a line of its own (a route case); the mark is then not it.
    if mark is not None and exc.line in (None, mark.key[0], mark.value[0]):
        if exc.at_key:
            return mark.key
        if exc.offset is not None and mark.text is not None:
            return mark.text[0], mark.text[1] + exc.offset
        return mark.value
    line = exc.line or (spec.lines.get(exc.key) if exc.key else None) or spec.line
    return line, spec.column if line == spec.line else None
