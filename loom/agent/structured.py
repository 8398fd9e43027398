"""An agent's structured replies: the model's answer checked against the agent's schema,
one correction asked for, and the failure when it still does not fit (docs/models.md)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from loom.errors import ProviderError
from loom.providers.json_schema import parse_reply, problems

# How many of the validation errors go into a correction or a failure reply.
SHOWN_PROBLEMS = 5


class SchemaMismatch(ProviderError):
    """The answer was still not JSON valid against the schema after one correction: the
    message fails with `error_type: "schema"`, the validation error its reason."""

    def __init__(self, problem: str) -> None:
        super().__init__(
            f"the reply does not match the schema: {problem}",
            error_type="schema",
            transient=False,
        )


@dataclass(frozen=True)
class Checked:
    """An answer held against the schema: its body (compact JSON) when it fits, else why not."""

    body: str | None = None
    problem: str | None = None


def check_reply(text: str, schema: Mapping[str, Any]) -> Checked:
    """The reply's body as compact JSON when `text` is JSON valid against `schema`."""
    try:
        value = parse_reply(text)
    except ValueError as exc:
        return Checked(problem=f"it is not JSON ({exc})")
    found = problems(value, schema)
    if found:
        more = len(found) - SHOWN_PROBLEMS
        shown = "; ".join(found[:SHOWN_PROBLEMS]) + (f"; and {more} more" if more > 0 else "")
        return Checked(problem=shown)
    return Checked(body=json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def correction(problem: str, schema: Mapping[str, Any]) -> str:
    """What the model is told after an answer that does not fit: the error and the schema."""
    return (
        f"Your reply does not match the required JSON Schema: {problem}.\n"
        "Answer again with only a JSON value valid against this schema:\n"
        + json.dumps(schema, ensure_ascii=False)
    )
