"""Errors of the pipe engine: bad operator arguments and per-message operator failures."""

from __future__ import annotations

from loom.errors import LoomError
from loom.store.message import Message


class ArgError(ValueError):
    """An operator argument that does not validate; the definition layer adds file and line.

    `key` names the offending argument and `line` (and `column`) point into the source
    file when known. `offset` is the 0-based place of the problem inside the value (a
    JMESPath syntax error); `at_key` says the key itself is wrong, not its value.
    """

    def __init__(
        self,
        key: str | None,
        problem: str,
        line: int | None = None,
        *,
        column: int | None = None,
        offset: int | None = None,
        at_key: bool = False,
    ) -> None:
        super().__init__(problem)
        self.key = key
        self.problem = problem
        self.line = line
        self.column = column
        self.offset = offset
        self.at_key = at_key


class ExpressionError(ValueError):
    """A JMESPath expression failed at run time on one message (e.g. a function type error)."""


class OperatorError(LoomError):
    """Operator `label` failed on one message; the pipeline stays usable for the next one.

    The foreground caller reports it and skips the message; the queued process writes a
    failure reply and moves the input to `.failed/` (SPEC 4, step 5).
    """

    error_type = "operator_error"

    def __init__(self, label: str, problem: str, msg: Message | None = None) -> None:
        super().__init__(f"operator {label} failed: {problem}")
        self.label = label
        self.problem = problem
        self.msg = msg

    @property
    def number(self) -> int:
        """The operator's position as users count it (1 is the first operator)."""
        return int(self.label.split(":", 1)[0])

    @property
    def kind(self) -> str:
        return self.label.split(":", 1)[1]
