"""Every case of the official JMESPath compliance suite, run through loom's compiler.

The suite is fetched into the virtualenv by scripts/jmespath_compliance.py (scripts/test
does it); without it these tests skip, saying so. A case gives a document, an expression
and either the result or the kind of error: a syntax, unknown-function or arity error must
be refused when the pipe definition is compiled, an invalid-type or invalid-value error
when the expression runs on that document.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loom.pipeline.errors import ArgError, ExpressionError
from loom.pipeline.expressions import compile_expression
from loom.store.message import Message

# Where scripts/jmespath_compliance.py puts the suite: inside the running virtualenv.
SUITE = Path(sys.prefix) / "jmespath-compliance"
# Refused by compile_expression, before any message runs.
LOAD_TIME_ERRORS = {"syntax", "unknown-function", "invalid-arity"}
MSG = Message("01JCOMPLIANCE", "compliance", 1, "{}")


def compliance_cases() -> Iterator[Any]:
    """One pytest param per case with a result or an error (benchmark-only cases have neither)."""
    for path in sorted(SUITE.glob("*.json")):
        groups = json.loads(path.read_text(encoding="utf-8"))
        for g, group in enumerate(groups):
            for c, case in enumerate(group["cases"]):
                if "result" in case or "error" in case:
                    yield pytest.param(group["given"], case, id=f"{path.stem}-{g}-{c}")


CASES = list(compliance_cases())


def canonical(value: Any) -> str:
    # JSON text keeps 1, 1.0 and true apart, which == would not.
    return json.dumps(value, sort_keys=True)


pytestmark = pytest.mark.skipif(
    not CASES,
    reason=f"the JMESPath compliance suite is not in {SUITE}: run scripts/jmespath_compliance.py",
)


def test_the_suite_is_whole() -> None:
    # 861 cases with an outcome in the fetched version: a short download must fail.
    assert len(CASES) >= 850


@pytest.mark.parametrize(("given", "case"), CASES)
def test_compliance_case(given: Any, case: dict[str, Any]) -> None:
    text = case["expression"]
    if "result" in case:
        assert canonical(compile_expression(text).search(given, MSG)) == canonical(case["result"])
    elif case["error"] in LOAD_TIME_ERRORS:
        with pytest.raises(ArgError):
            compile_expression(text)
    else:
        expression = compile_expression(text)
        with pytest.raises(ExpressionError):
            expression.search(given, MSG)
