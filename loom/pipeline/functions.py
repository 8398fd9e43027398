"""loom's JMESPath functions, and the body parsing they share with expressions (SPEC 6).

`envelope('from'|'id'|'ts'|'origin'|'error'|'to'|'v'|'body')`, `sender()`,
`is_error()` and `origin_root()` read the envelope of the message being evaluated;
`from_json(text)` looks inside the bodies of a batch.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar, cast

from jmespath import functions as jfun

from loom.pipeline.errors import ExpressionError
from loom.store.message import Message

ENVELOPE_FIELDS = ("id", "from", "ts", "origin", "error", "to", "v", "body")

_F = TypeVar("_F", bound=Callable[..., Any])


def _signature(*arguments: dict[str, Any]) -> Callable[[_F], _F]:
    # jmespath ships no type hints; this keeps the decorated methods typed.
    return cast(Callable[[_F], _F], jfun.signature(*arguments))


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; such a body is text, like any other non-JSON body.
    raise ValueError(name)


# `json.loads` with a keyword argument builds a new decoder on every call.
_decoder = json.JSONDecoder(parse_constant=_reject_constant)
_decode = _decoder.decode
# The decoder's C scanner reads one value from a position and says where it ended;
# decode() adds whitespace handling around it, which most bodies do not need.
_scan: Callable[[str, int], tuple[Any, int]] = vars(_decoder)["scan_once"]
# The last body parsed and its value: the operators of a chain (a filter, then a map)
# usually evaluate the same body one after the other. A tuple, replaced whole, so
# threads never see a text with another text's value.
_last_parsed: tuple[str, Any] = ("", "")


def parse_body(body: str) -> Any:
    """The body as a JSON value, or the body itself as a string when it is not JSON.

    The value may be shared with other callers that parsed the same text: never change it.
    """
    global _last_parsed
    last = _last_parsed
    if body == last[0]:
        return last[1]
    try:
        try:
            value, end = _scan(body, 0)
        except StopIteration:  # no value at the start: let decode() judge (whitespace?)
            end = -1
        if end != len(body):
            value = _decode(body)
    except (ValueError, RecursionError):
        value = body
    _last_parsed = (body, value)
    return value


def envelope_field(msg: Message, name: str) -> Any:
    """The JSON value of envelope field `name` (one of ENVELOPE_FIELDS) of `msg`."""
    if name == "from":
        return msg.sender
    if name == "to":
        return list(msg.to) if msg.to is not None else None
    if name == "error":
        return msg.error
    return getattr(msg, name)


class LoomFunctions(jfun.Functions):  # type: ignore[misc]
    """JMESPath's built-in functions plus loom's envelope functions, bound to one message."""

    def __init__(self, msg: Message) -> None:
        self.msg = msg

    @_signature({"types": ["string"]})
    def _func_envelope(self, name: str) -> Any:
        if name not in ENVELOPE_FIELDS:
            raise ExpressionError(
                f"envelope({name!r}): unknown field; use one of {', '.join(ENVELOPE_FIELDS)}"
            )
        return envelope_field(self.msg, name)

    @_signature()
    def _func_sender(self) -> str:
        return self.msg.sender

    @_signature()
    def _func_is_error(self) -> bool:
        return self.msg.error

    @_signature()
    def _func_origin_root(self) -> str:
        # The first message of the run: origin's first segment, or this message itself.
        return self.msg.origin.split("/", 1)[0] if self.msg.origin else self.msg.filename

    @_signature({"types": ["string"]})
    def _func_from_json(self, text: str) -> Any:
        # Same rule as bodies: text that is not JSON stays a string.
        return parse_body(text)


FUNCTIONS: dict[str, Any] = LoomFunctions.FUNCTION_TABLE
