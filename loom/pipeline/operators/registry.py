"""The operator registry: one dict from operator name to class (STYLE 4).

Built-in operators register with `@register` exactly as a third-party one would; an
installed package can also expose operators through the `loom.operators` entry-point
group, loaded the first time a name is not found.
"""

from __future__ import annotations

import difflib

from loom.pipeline.errors import ArgError
from loom.pipeline.operators.base import Operator

REGISTRY: dict[str, type[Operator]] = {}
ENTRY_POINT_GROUP = "loom.operators"
_plugins_loaded = False


def register(cls: type[Operator]) -> type[Operator]:
    """Class decorator adding an operator under its `kind`; a name can be taken once."""
    if not cls.kind or not cls.kind.isidentifier():
        raise ValueError(f"operator class {cls.__name__} needs a 'kind' name")
    existing = REGISTRY.get(cls.kind)
    if existing is not None and existing is not cls:
        raise ValueError(f"operator '{cls.kind}' is already registered by {existing.__name__}")
    REGISTRY[cls.kind] = cls
    return cls


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    # Imported here: importlib.metadata costs `loom pipe run` start-up time, and most
    # runs never look for a plug-in.
    from importlib import metadata

    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        loaded = entry.load()
        if isinstance(loaded, type) and issubclass(loaded, Operator):
            register(loaded)


def lookup(kind: str) -> type[Operator]:
    """The class registered as `kind`; ArgError with a did-you-mean when there is none."""
    cls = REGISTRY.get(kind)
    if cls is None:
        _load_plugins()
        cls = REGISTRY.get(kind)
    if cls is None:
        close = difflib.get_close_matches(kind, sorted(REGISTRY), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        known = ", ".join(sorted(REGISTRY))
        raise ArgError(None, f"unknown operator '{kind}'{hint}; known operators: {known}")
    return cls


def names() -> list[str]:
    """Every registered operator name, sorted."""
    return sorted(REGISTRY)
