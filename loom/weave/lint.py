"""`loom validate`: check weave files and standalone pipe files, every problem located.

A file is a pipe definition when it is JSON, or YAML whose top level is a list of
operators or a mapping with `operators` and no `version` or `agents` (the catalog's
`pipes/x.yml` form); a mapping with `tests` is a `loom test` file (so `pipes/*.yml`
can be checked at once); anything else is read as a weave.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loom.errors import ConfigError, LoomError
from loom.pipeline import load_file, pipetest
from loom.pipeline.pipetest import MalformedTest
from loom.pipeline.spec import DefinitionInvalid
from loom.pipeline.yaml_lines import YamlError, read_yaml
from loom.store.files import CONFIG_LIMIT, read_bounded
from loom.weave.apply import check_home
from loom.weave.model import Problem
from loom.weave.parse import WeaveInvalid, read
from loom.wording import count

WEAVE_KEYS = ("version", "agents")


@dataclass(frozen=True)
class Checked:
    """The outcome for one file: what it was read as, a summary, and its problems."""

    path: Path
    kind: str  # "weave", "pipe" or "test"
    summary: str
    problems: tuple[str, ...] = ()  # each rendered as FILE:LINE:COL: message
    # 1 for problems in the file, 2 when it could not be used at all (missing, a device,
    # too big): loom's usage-error status (SPEC 10).
    exit_code: int = 0


def check(path: Path, environ: Mapping[str, str] | None = None) -> Checked:
    """Check one file, weave or pipe; problems are returned, never raised."""
    environ = os.environ if environ is None else environ
    source = str(path)
    if not path.exists():
        return Checked(path, "file", "", (f"{source}: does not exist",), 2)
    kind = _kind(path)
    try:
        if kind == "test":
            suite = pipetest.load(path)
            cases = count(len(suite.cases), "test")
            return Checked(path, kind, f"{cases} of pipe '{suite.definition.name}'")
        if kind == "pipe":
            defn = load_file(path)
            ops = count(len(defn.operators), "operator")
            return Checked(path, kind, f"pipe '{defn.name}', {ops}")
        weave = read(path, environ)
        # Names that another project (another loom.yml) or a hand-started process holds.
        check_home(weave)
    except WeaveInvalid as exc:
        return Checked(path, kind, "", tuple(p.render(exc.source) for p in exc.problems), 1)
    except DefinitionInvalid as exc:
        return Checked(path, kind, "", tuple(p.render(exc.source) for p in exc.problems), 1)
    except YamlError as exc:
        problem = Problem(exc.line or 1, exc.column or 1, exc.problem)
        return Checked(path, kind, "", (problem.render(source),), 1)
    except (MalformedTest, ConfigError) as exc:
        return Checked(path, kind, "", (_located(str(exc), source),), 1)
    except LoomError as exc:  # a file that cannot be used at all (a device, too big)
        return Checked(path, kind, "", (_located(str(exc), source),), exc.exit_code)
    agents, pipes = count(len(weave.agents), "agent"), count(len(weave.pipes), "pipe")
    return Checked(path, kind, f"{agents}, {pipes}")


def _kind(path: Path) -> str:
    """ "pipe", "test" or "weave", from the file's name and top level."""
    if path.suffix == ".json":
        return "pipe"
    try:
        data: Any = read_yaml(read_bounded(path, CONFIG_LIMIT, "file").decode("utf-8"), str(path))
    except (ConfigError, LoomError, OSError, UnicodeDecodeError):
        return "weave"  # reading it as a weave reports the problem with its place
    if isinstance(data, list):
        return "pipe"
    if not isinstance(data, Mapping) or any(key in data for key in WEAVE_KEYS):
        return "weave"
    if "operators" in data:
        return "pipe"
    return "test" if "tests" in data else "weave"


def _located(message: str, source: str) -> str:
    """A message that may already name the file, as one problem line of that file."""
    return message if message.startswith(f"{source}:") else f"{source}: {message}"
