"""Durable operator state: `state/<number>-<kind>/state.json`, rewritten atomically.

Besides the operator's own state the file records `applied`: which input (and which
outputs) the state already includes. A queued pipe writes an operator's outputs
before its state, so after a crash `applied` tells whether a step took effect.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from loom import atomic
from loom.errors import LoomError
from loom.pipeline.spec import OperatorSpec

STATE_VERSION = 1


class StateStore:
    """Reads and writes the state files of one pipe instance's operators."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir

    def path(self, spec: OperatorSpec) -> Path:
        return self.dir / f"{spec.number}-{spec.kind}" / "state.json"

    def load(self, spec: OperatorSpec) -> tuple[Any, dict[str, Any] | None] | None:
        """`(state, applied)` from disk, or None when the operator has no state yet."""
        path = self.path(spec)
        try:
            raw = path.read_text("utf-8")
        except FileNotFoundError:
            return None
        try:
            doc = json.loads(raw)
            if doc.get("operator") != spec.kind:
                raise ValueError(f"it belongs to a '{doc.get('operator')}' operator")
            return doc["state"], doc.get("applied")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise LoomError(
                f"{path}: unreadable operator state ({exc}); "
                "move the file away to restart this operator empty"
            ) from None

    def save(self, spec: OperatorSpec, state: Any, applied: dict[str, Any] | None) -> None:
        path = self.path(spec)
        doc = {"v": STATE_VERSION, "operator": spec.kind, "state": state, "applied": applied}
        text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
        try:
            atomic.write_text(path, text)
        except FileNotFoundError:
            atomic.make_private_dir(path.parent)
            atomic.write_text(path, text)
