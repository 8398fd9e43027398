"""Where the catalog shipped with loom lives: ready pipes and external operators (SPEC 6).

In a wheel they are package data under `loom/_catalog/`; in a source checkout (an
editable install) they are the repository's top-level `pipes/` and `operators/`.
"""

from __future__ import annotations

from pathlib import Path


def catalog_dir(kind: str = "pipes") -> Path:
    """The catalog folder `kind` (`pipes`, `operators` or `examples`), packaged or in the
    checkout."""
    package = Path(__file__).resolve().parent.parent
    packaged = package / "_catalog" / kind
    if packaged.is_dir():
        return packaged
    return package.parent / kind
