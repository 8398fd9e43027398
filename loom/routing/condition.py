"""An edge's `when` condition: a JMESPath test on the message (SPEC 7).

The pipe engine's expression module does the work, so a condition sees the body parsed
as JSON (text bodies as a JSON string) and can use loom's envelope functions such as
`envelope('from')` and `is_error()`, exactly as a `filter:` operator does.
"""

from __future__ import annotations

from loom.errors import ConfigError
from loom.pipeline.errors import ArgError, ExpressionError
from loom.pipeline.expressions import Expression, compile_expression, is_truthy
from loom.store.message import Message


class Condition:
    """A compiled `when`; `matches` is false when the expression is falsy or fails."""

    __slots__ = ("text", "_expression")

    def __init__(self, text: str) -> None:
        try:
            self._expression: Expression = compile_expression(text, key="when")
        except ArgError as exc:
            # The engine's message carries a caret drawing on later lines; one line is
            # enough here, the column is in it.
            raise ConfigError(f"'when' {exc.problem.splitlines()[0]}") from None
        self.text = text

    def __repr__(self) -> str:
        return f"Condition({self.text!r})"

    def matches(self, msg: Message) -> bool:
        """Whether `msg` passes; raise ExpressionError when evaluation fails on this message."""
        return is_truthy(self._expression.evaluate(msg))


__all__ = ["Condition", "ExpressionError"]
