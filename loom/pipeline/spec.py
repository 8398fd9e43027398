"""The one model every definition form is parsed into: PipeDef and OperatorSpec."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from loom.errors import ConfigError
from loom.pipeline.errors import ArgError


@dataclass(frozen=True)
class OperatorSpec:
    """One step of a pipe: its operator `kind` and normalised `args`.

    `index` is the 0-based position in the pipe; users see `number` (1-based) in labels,
    error messages, `steps/<number>/` and `state/<number>-<kind>/`. `line` and `lines`
    (per argument key) point into the source file when it was YAML.
    """

    kind: str
    args: Mapping[str, Any] = field(default_factory=dict, hash=False)
    index: int = 0
    line: int | None = field(default=None, compare=False)
    lines: Mapping[str, int] = field(default_factory=dict, compare=False, hash=False)

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


def config_error(
    source: str,
    pipe: str,
    problem: str,
    *,
    line: int | None = None,
    spec: OperatorSpec | None = None,
    key: str | None = None,
) -> ConfigError:
    """A ConfigError naming the file, the line, the operator and the key (SPEC 9)."""
    where = f"{source}:{line}" if line else source
    parts = [f"pipe '{pipe}'"]
    if spec is not None:
        parts.append(
            f"operator {spec.number} ({spec.kind})" if spec.kind else f"operator {spec.number}"
        )
    if key:
        parts.append(f"key '{key}'")
    return ConfigError(f"{where}: {', '.join(parts)}: {problem}")


def arg_config_error(source: str, pipe: str, spec: OperatorSpec, exc: ArgError) -> ConfigError:
    """Turn an operator's ArgError into a located ConfigError."""
    line = exc.line or (spec.lines.get(exc.key) if exc.key else None) or spec.line
    return config_error(source, pipe, exc.problem, line=line, spec=spec, key=exc.key)
