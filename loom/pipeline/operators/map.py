"""`map: EXPR` — the body becomes the result of EXPR (SPEC 6).

A string result becomes the body as is (like `jq -r`), anything else its compact JSON
text, so `map: title` gives `Hello` and `map: "{t: title}"` gives `{"t":"Hello"}`.
"""

from __future__ import annotations

from loom.pipeline.expressions import render_value
from loom.pipeline.operators.base import Args, Operator
from loom.pipeline.operators.registry import register
from loom.store.message import Message


@register
class MapOperator(Operator):
    kind = "map"
    primary = "expr"

    def configure(self, args: Args) -> None:
        self.expr = args.required_expr("expr")

    def process(self, msg: Message, key: str, now: float) -> list[Message]:
        return [msg.with_body(render_value(self.expr.evaluate(msg)))]
