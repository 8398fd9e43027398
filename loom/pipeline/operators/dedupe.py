"""`dedupe: {key: EXPR, by: EXPR}` — drop a message whose key was already seen (SPEC 6).

Keys are compared as canonical JSON; with `by` they are only compared within the same
`by` value. A message whose key is null passes and records nothing. In a queued pipe a
key is persisted only after the message was written onward, so a crash can repeat a
message but never drop one silently.
"""

from __future__ import annotations

from typing import Any

from loom.pipeline.operators.base import Args, Operator, key_text
from loom.pipeline.operators.registry import register
from loom.store.message import Message


@register
class DedupeOperator(Operator):
    kind = "dedupe"
    primary = "key"
    stateful = True
    incremental = True

    def configure(self, args: Args) -> None:
        self.key = args.required_expr("key")
        self.by = args.expr("by", required=False)
        # Insertion-ordered, so `loom gc` can keep the most recent keys (SPEC 11).
        self.seen: dict[str, None] = {}
        self._new: list[str] = []  # keys added since the last commit

    def process(self, msg: Message, key: str, now: float) -> list[Message]:
        value = self.key.evaluate(msg)
        if value is None:
            return [msg]
        seen_key = key_text(value) if self.by is None else key_text([self.by.evaluate(msg), value])
        if seen_key in self.seen:
            self.ctx.drop()
            return []
        self.seen[seen_key] = None
        self._new.append(seen_key)
        return [msg]

    def dump_state(self) -> Any:
        return {"seen": list(self.seen)}

    def load_state(self, data: Any) -> None:
        self.seen = dict.fromkeys(data["seen"])

    def take_delta(self) -> Any:
        new, self._new = self._new, []
        return new

    def apply_delta(self, delta: Any) -> None:
        for key in delta:
            self.seen.pop(key, None)  # re-inserted: it is the most recent again
            self.seen[key] = None
