"""`accumulate: {expr: EXPR}` — a running fold: EXPR over `[state, body]` is the new state.

The state starts as null; after every message the new state is emitted as the body
(rendered like `map`: a string as is, anything else as JSON) and kept for the next one.
"""

from __future__ import annotations

from typing import Any

from loom.pipeline.expressions import parse_body, render_value
from loom.pipeline.operators.base import Args, Operator
from loom.pipeline.operators.registry import register
from loom.store.message import Message


@register
class AccumulateOperator(Operator):
    kind = "accumulate"
    primary = "expr"
    stateful = True

    def configure(self, args: Args) -> None:
        self.expr = args.required_expr("expr")
        self.value: Any = None

    def process(self, msg: Message, key: str, now: float) -> list[Message]:
        self.value = self.expr.search([self.value, parse_body(msg.body)], msg)
        return [msg.with_body(render_value(self.value))]

    def dump_state(self) -> Any:
        return {"value": self.value}

    def load_state(self, data: Any) -> None:
        self.value = data["value"]
