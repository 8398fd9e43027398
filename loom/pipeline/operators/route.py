"""`route: [{when: EXPR, to: DEST(S)}, ..., {to: DEST(S)}]` — choose destinations (SPEC 6).

The first matching case sets `to`; a last case without `when` is the default. With
`mode: all` the message goes to every matching case (one message, `to` = the union,
in case order); the default applies only when no case matched. No match and no
default: the message is dropped and counted.
"""

from __future__ import annotations

from typing import Any

from loom.pipeline.errors import ArgError
from loom.pipeline.expressions import Expression, compile_expression, is_truthy
from loom.pipeline.operators.base import Args, Operator
from loom.pipeline.operators.registry import register
from loom.store.message import Message

_CASE_KEYS = ("when", "to")


@register
class RouteOperator(Operator):
    kind = "route"
    primary = "cases"

    def configure(self, args: Args) -> None:
        self.mode = args.choice("mode", ("first", "all"), default="first")
        cases = args.raw("cases")
        if not isinstance(cases, list) or not cases:
            raise ArgError(
                "cases",
                "must be a non-empty list of {when: EXPR, to: DEST} cases",
                args.line("cases"),
            )
        self.cases: list[tuple[Expression, tuple[str, ...]]] = []
        self.default: tuple[str, ...] | None = None
        for i, case in enumerate(cases):
            self._add_case(args, i, case, last=i == len(cases) - 1)

    def _add_case(self, args: Args, i: int, case: Any, *, last: bool) -> None:
        line = getattr(case, "line", None) or args.line("cases")
        column = getattr(case, "column", None)
        where = f"case {i + 1}"
        if not isinstance(case, dict):
            raise ArgError(
                "cases", f"{where} must be a mapping with 'to' (and 'when'), got {case!r}", line
            )
        for key in case:
            if key not in _CASE_KEYS:
                at = getattr(case, "key_marks", {}).get(str(key), (line, column))
                raise ArgError(
                    "cases",
                    f"{where}: unknown key '{key}'; expected: when, to",
                    at[0],
                    column=at[1],
                )
        if "to" not in case:
            raise ArgError("cases", f"{where}: 'to' is required", line, column=column)
        dests = args.names("to", case["to"], line=line)
        if "when" not in case:
            if not last:
                raise ArgError(
                    "cases",
                    f"{where} has no 'when': only the last case can be the default",
                    line,
                    column=column,
                )
            self.default = dests
            return
        try:
            when = compile_expression(case["when"], key="when")
        except ArgError as exc:
            at = _when_place(case, exc.offset) or (line, column)
            raise ArgError(
                "cases", f"{where}, 'when': {exc.problem}", at[0], column=at[1]
            ) from None
        self.cases.append((when, dests))

    def process(self, msg: Message, key: str, now: float) -> list[Message]:
        chosen: list[str] = []
        for when, dests in self.cases:
            if is_truthy(when.evaluate(msg)):
                chosen.extend(dests)
                if self.mode == "first":
                    break
        if not chosen and self.default is not None:
            chosen.extend(self.default)
        if not chosen:
            self.ctx.drop()
            return []
        return [msg.with_to(tuple(dict.fromkeys(chosen)))]


def _when_place(case: Any, offset: int | None) -> tuple[int, int] | None:
    """Where in the file a case's `when` (or the place `offset` into it) is, if known."""
    text = getattr(case, "text_marks", {}).get("when")
    if text is not None and offset is not None:
        return (text[0], text[1] + offset)
    mark: tuple[int, int] | None = getattr(case, "value_marks", {}).get("when")
    return mark
