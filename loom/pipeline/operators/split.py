"""`split: EXPR` — EXPR yields a list; one message per element, bodies rendered like `map`.

A null result or an empty list forwards nothing (counted as a drop); any other
non-list result is an error for that message, since silently wrapping it would hide
a wrong expression.
"""

from __future__ import annotations

from loom.pipeline.errors import ExpressionError
from loom.pipeline.expressions import render_value
from loom.pipeline.operators.base import Args, Operator
from loom.pipeline.operators.registry import register
from loom.store.message import Message


@register
class SplitOperator(Operator):
    kind = "split"
    primary = "expr"

    def configure(self, args: Args) -> None:
        self.expr = args.required_expr("expr")

    def process(self, msg: Message, key: str, now: float) -> list[Message]:
        result = self.expr.evaluate(msg)
        if result is None or result == []:
            self.ctx.drop()
            return []
        if not isinstance(result, list):
            kind = type(result).__name__.replace("dict", "object").replace("str", "string")
            raise ExpressionError(f"{self.expr.text!r} gave {kind}, split needs a list")
        return [msg.with_body(render_value(item)) for item in result]
