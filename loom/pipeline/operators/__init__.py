"""Operators: the base class, the registry, and the built-in operators (SPEC 6).

Importing this package registers the built-ins; each lives in its own module and
registers itself with `@register`, as a third-party operator would.
"""

from __future__ import annotations

from loom.pipeline.operators import (  # noqa: F401  (imported to register them)
    accumulate,
    buffer,
    command,
    dedupe,
    fanout,
    filter,
    map,
    route,
    split,
    tap,
    throttle,
    window,
)
from loom.pipeline.operators.base import Args, Context, Operator
from loom.pipeline.operators.registry import REGISTRY, lookup, names, register

__all__ = ["REGISTRY", "Args", "Context", "Operator", "lookup", "names", "register"]
