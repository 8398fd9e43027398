"""JMESPath expressions, compiled once per pipe and evaluated against one message (SPEC 6).

The body is parsed as JSON; a body that is not JSON is evaluated as a JSON string, so
an expression never crashes on text. loom adds functions that read the envelope
(loom.pipeline.functions). jmespath parses the text; loom.pipeline.compiler turns the
tree into Python closures that take the message being evaluated as an argument, so one
compiled expression is safe to share.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import Any

import jmespath
from jmespath import exceptions as jexc

from loom.pipeline.compiler import compile_tree, required_text
from loom.pipeline.errors import ArgError, ExpressionError
from loom.pipeline.functions import ENVELOPE_FIELDS, FUNCTIONS, LoomFunctions, parse_body
from loom.store.files import json_encoder
from loom.store.message import Message

__all__ = [
    "ENVELOPE_FIELDS",
    "FUNCTIONS",
    "Expression",
    "LoomFunctions",
    "compact_json",
    "compile_expression",
    "is_truthy",
    "parse_body",
    "render_value",
]

# Error texts quote the offending value; a 10 MB body must not end up in a log line.
_MAX_ERROR = 300
# Built once (`json_encoder`): `JSONEncoder.encode` builds a C encoder on every call.
_compact = json_encoder(ensure_ascii=False, separators=(",", ":"))
# The functions that read the message rather than the body (loom.pipeline.functions).
_ENVELOPE_FUNCTIONS = frozenset({"envelope", "sender", "is_error", "origin_root"})
# What `on_body` hands the compiled closures as the message: they never read it.
_NO_ENVELOPE = Message(id="0" * 26, sender="", ts=0, body="")


def render_value(value: Any) -> str:
    """The body text for an expression result: strings raw (like `jq -r`), the rest as JSON."""
    if isinstance(value, str):
        return value
    return _compact(value)


def compact_json(value: Any) -> str:
    """One-line JSON text, used for keys and batch bodies."""
    return _compact(value)


def is_truthy(value: Any) -> bool:
    """JMESPath truthiness: false, null, "", [] and {} are false; everything else (0 too) true."""
    if value is None or value is False:
        return False
    if isinstance(value, (str, list, dict)):
        return len(value) > 0
    return True


def _shorten(text: str) -> str:
    return text if len(text) <= _MAX_ERROR else text[:_MAX_ERROR] + "..."


class Expression:
    """A compiled JMESPath expression; `evaluate` never raises anything but ExpressionError."""

    __slots__ = ("text", "reads_envelope", "required_text", "_run")

    def __init__(self, text: str, parsed: Any) -> None:
        self.text = text
        # Whether the result can depend on the envelope, not only on the body.
        self.reads_envelope = any(
            node.get("type") == "function_expression" and node["value"] in _ENVELOPE_FUNCTIONS
            for node in _walk(parsed.parsed)
        )
        # A text a JSON body without backslashes must contain for the result to be true.
        self.required_text = required_text(parsed.parsed)
        self._run = compile_tree(parsed.parsed)

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"

    def search(self, value: Any, msg: Message) -> Any:
        """Evaluate against `value`, with `msg` as the envelope the loom functions see."""
        try:
            return self._run(value, msg)
        except ExpressionError:
            raise
        except (jexc.JMESPathError, TypeError, ValueError, RecursionError) as exc:
            raise self._failure(exc) from None

    def evaluate(self, msg: Message) -> Any:
        """Evaluate against the message body (parsed as JSON when it is JSON)."""
        # search() inlined: this runs once per message and operator.
        try:
            return self._run(parse_body(msg.body), msg)
        except ExpressionError:
            raise
        except (jexc.JMESPathError, TypeError, ValueError, RecursionError) as exc:
            raise self._failure(exc) from None

    def on_body(self, value: Any) -> Any:
        """Evaluate against `value` for an expression that does not read the envelope.

        Errors are raised as they come (not as ExpressionError): the caller falls back to
        `evaluate`, which reports them.
        """
        return self._run(value, _NO_ENVELOPE)

    def _failure(self, exc: Exception) -> ExpressionError:
        return ExpressionError(_shorten(f"{self.text!r}: {exc}"))


def compile_expression(text: object, *, key: str = "expr") -> Expression:
    """Compile `text`, checking function names and arities too; raise ArgError with a caret."""
    if not isinstance(text, str):
        raise ArgError(key, f"must be a JMESPath expression (a string), got {text!r}")
    if not text.strip():
        raise ArgError(key, "must be a JMESPath expression, got an empty string")
    try:
        parsed = jmespath.compile(text)
    except jexc.ParseError as exc:
        problem, position = _parse_problem(text, exc)
        raise ArgError(key, problem, offset=position) from None
    except jexc.JMESPathError as exc:
        raise ArgError(key, f"bad JMESPath expression: {exc}") from None
    _check_functions(parsed.parsed, key)
    return Expression(text, parsed)


def _parse_problem(text: str, exc: jexc.ParseError) -> tuple[str, int]:
    """The message with a caret under the place, and that place (0-based) in `text`."""
    position = getattr(exc, "lexer_position", None)
    if position is None:
        position = exc.lex_position
    if isinstance(exc, jexc.IncompleteExpressionError):
        detail = "the expression ends too early"
        position = len(text)
    elif isinstance(exc, jexc.LexerError):
        detail = str(exc.message)
    else:
        detail = str(exc.msg)
    position = max(0, min(int(position or 0), len(text)))
    caret = " " * position + "^"
    where = f"at character {position + 1} of the expression"
    return f"bad JMESPath expression {where}: {detail}\n    {text}\n    {caret}", position


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for child in node.get("children", []):
            yield from _walk(child)


def _check_functions(tree: Any, key: str) -> None:
    # jmespath only notices an unknown function or a wrong argument count when it runs;
    # a definition should fail at load time instead (SPEC 9, "validation happens before").
    for node in _walk(tree):
        if node.get("type") != "function_expression":
            continue
        name = node["value"]
        spec = FUNCTIONS.get(name)
        if spec is None:
            close = difflib.get_close_matches(name, list(FUNCTIONS), n=1)
            hint = f" (did you mean {close[0]}()?)" if close else ""
            raise ArgError(key, f"unknown JMESPath function {name}(){hint}")
        signature = spec["signature"]
        given = len(node["children"])
        variadic = bool(signature) and bool(signature[-1].get("variadic"))
        if (variadic and given < len(signature)) or (not variadic and given != len(signature)):
            want = f"at least {len(signature)}" if variadic else str(len(signature))
            raise ArgError(key, f"{name}() takes {want} argument(s), got {given}")
        if name == "envelope":
            arg = node["children"][0]
            if arg.get("type") == "literal" and arg.get("value") not in ENVELOPE_FIELDS:
                raise ArgError(
                    key,
                    f"envelope({arg.get('value')!r}): unknown field; "
                    f"use one of {', '.join(ENVELOPE_FIELDS)}",
                )
