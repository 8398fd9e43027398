"""Pipes: definitions, operators and the engine that runs them (SPEC 6).

`import loom.pipeline` does not import yaml (only parsing YAML text does) nor httpx.
"""

from __future__ import annotations

from loom.pipeline.definition import (
    catalog_dir,
    instance_definition_path,
    load_definition,
    load_file,
    parse_definition,
    save_definition,
)
from loom.pipeline.engine import Pipeline
from loom.pipeline.errors import OperatorError
from loom.pipeline.spec import OperatorSpec, PipeDef

__all__ = [
    "OperatorError",
    "OperatorSpec",
    "PipeDef",
    "Pipeline",
    "catalog_dir",
    "instance_definition_path",
    "load_definition",
    "load_file",
    "parse_definition",
    "save_definition",
]
