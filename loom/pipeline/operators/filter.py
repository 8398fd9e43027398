"""`filter: EXPR` — keep a message when EXPR is true (JMESPath truthiness), drop it otherwise."""

from __future__ import annotations

from loom.pipeline.expressions import is_truthy
from loom.pipeline.operators.base import Args, Operator
from loom.pipeline.operators.registry import register
from loom.store.message import Message


@register
class FilterOperator(Operator):
    kind = "filter"
    primary = "expr"

    def configure(self, args: Args) -> None:
        self.expr = args.required_expr("expr")

    def process(self, msg: Message, key: str, now: float) -> list[Message]:
        if is_truthy(self.expr.evaluate(msg)):
            return [msg]
        self.ctx.drop()
        return []
