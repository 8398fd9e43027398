"""A chain of plain `map` and `filter` steps run on body values alone (`loom pipe run`).

The engine turns every input line into a message, every step's result into another
message, and a map's result into text that the next step parses again. For body
output, a chain of built-in `map` and `filter` steps whose expressions never read the
envelope needs none of that: the line is parsed once, each filter tests the value,
each map computes the next one, and only the last map's result becomes text. The
result is the body the engine would give, by the same rules (render_value between
steps, JMESPath truthiness); anything unusual (an expression error) is left to the
engine, which then reports it as it always does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from loom.pipeline.engine import Pipeline
from loom.pipeline.expressions import Expression, parse_body, render_value
from loom.pipeline.operators.base import Operator
from loom.pipeline.operators.filter import FilterOperator
from loom.pipeline.operators.map import MapOperator

BodyStep = Callable[[str], str | None]


class BodyChain:
    """`run(line)` is the body `line` becomes through the chain, None when a filter drops it.

    Any exception from `run` means: let the engine process this line instead (it raises
    the operator error, with its label and message, that the caller reports).
    """

    def __init__(self, operators: list[Operator]) -> None:
        self._operators = operators
        self._drops = [0] * len(operators)
        self.run = self._build(operators)

    @classmethod
    def of(cls, pipeline: Pipeline) -> BodyChain | None:
        """The chain for `pipeline`, None unless every step is a map or filter on bodies."""
        operators = pipeline.operators
        if not operators:
            return None
        for op in operators:
            if type(op) not in (MapOperator, FilterOperator):
                return None  # a plugin subclass may do more in process()
            expr: Expression = op.expr  # type: ignore[attr-defined]
            if expr.reads_envelope:
                return None
        return cls(list(operators))

    def _build(self, operators: list[Operator]) -> BodyStep:
        drops = self._drops
        steps: list[tuple[int, bool, Callable[[Any], Any]]] = [
            (pos, type(op) is FilterOperator, op.expr.on_body)  # type: ignore[attr-defined]
            for pos, op in enumerate(operators)
        ]
        if len(steps) == 2 and steps[0][1] and not steps[1][1]:
            # filter then map, the usual shape: no loop.
            test, project = steps[0][2], steps[1][2]
            needle = operators[0].expr.required_text  # type: ignore[attr-defined]

            def filter_map(line: str) -> str | None:
                if needle is not None and needle not in line and "\\" not in line:
                    drops[0] += 1  # the filter cannot be true: no need to parse
                    return None
                value = parse_body(line)
                found = test(value)
                # is_false(found), inline.
                if (
                    found is False
                    or found is None
                    or (isinstance(found, (str, list, dict)) and not found)
                ):
                    drops[0] += 1
                    return None
                return render_value(project(value))

            return filter_map
        last = len(steps) - 1

        def chain(line: str) -> str | None:
            body = line
            value = parse_body(line)
            for pos, is_filter, run in steps:
                found = run(value)
                if is_filter:
                    if (
                        found is False
                        or found is None
                        or (isinstance(found, (str, list, dict)) and not found)
                    ):
                        drops[pos] += 1
                        return None
                    continue
                body = render_value(found)
                if pos != last:
                    value = parse_body(body)
            return body

        return chain

    def count_drops(self) -> None:
        """Hand the drops counted so far to the operators (the pipeline's `drops`)."""
        for pos, count in enumerate(self._drops):
            if count:
                self._operators[pos].ctx.drop(count)
                self._drops[pos] = 0
