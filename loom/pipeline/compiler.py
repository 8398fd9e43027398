"""JMESPath syntax trees turned into Python closures, once per expression.

jmespath interprets its tree on every evaluation, dispatching on each node's type by
name; a pipe evaluates the same few expressions for every message, so loom compiles
the tree (as jmespath's parser returns it) into nested closures instead. Each closure
takes the current value and the message (for loom's envelope functions) and gives
exactly what jmespath's interpreter gives, errors included: the same comparisons
(`0` is not `false`, ordering only between numbers or strings), the same JMESPath
truthiness, the same `null` results for a field of a non-object or an index of a
non-list. Nodes the compiler has no rule for (expression references, the functions
that take them) are handed to jmespath's interpreter, so any expression jmespath runs
compiles.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from numbers import Number
from typing import Any

from jmespath.visitor import Options, TreeInterpreter

from loom.pipeline.functions import ENVELOPE_FIELDS, LoomFunctions, envelope_field, parse_body
from loom.store.message import Message

Compiled = Callable[[Any, Message], Any]
Node = dict[str, Any]

_ORDERING: dict[str, Callable[[Any, Any], Any]] = {
    "lt": operator.lt,
    "lte": operator.le,
    "gt": operator.gt,
    "gte": operator.ge,
}


# -- JMESPath's value rules ----------------------------------------------------------
def is_number(value: Any) -> bool:
    """A JSON number: bool is an int to Python, not to JMESPath."""
    kind = type(value)
    if kind is int or kind is float:
        return True
    return kind is not bool and isinstance(value, Number)


def is_false(value: Any) -> bool:
    """JMESPath falsiness: null, false, and an empty string, list or object."""
    if value is None or value is False:
        return True
    return isinstance(value, (str, list, dict)) and not value


def equal(left: Any, right: Any) -> bool:
    """JMESPath `==`: Python equality, except that 0 and 1 never equal false and true."""
    if is_number(left) and left in (0, 1) and isinstance(right, bool):
        return False
    if is_number(right) and right in (0, 1) and isinstance(left, bool):
        return False
    return bool(left == right)


def _orderable(value: Any) -> bool:
    # Ordering applies to numbers and strings; anything else compares as null.
    return type(value) is str or is_number(value) or isinstance(value, str)


# -- the compiler ------------------------------------------------------------------
def compile_tree(node: Node) -> Compiled:
    """A closure `(value, message) -> result` equivalent to interpreting `node`."""
    try:
        return _compile(node)
    except RecursionError:
        # A tree too deep to compile recursively: jmespath interprets it, as before.
        return interpreted(node)


def _compile(node: Node) -> Compiled:
    build = _RULES.get(node["type"])
    return interpreted(node) if build is None else build(node)


def interpreted(node: Node) -> Compiled:
    """The fallback: jmespath's own interpreter evaluates `node`."""

    def run(value: Any, msg: Message) -> Any:
        return TreeInterpreter(Options(custom_functions=LoomFunctions(msg))).visit(node, value)

    return run


def _field_name(node: Node) -> str | None:
    return str(node["value"]) if node["type"] == "field" else None


def _field(node: Node) -> Compiled:
    name = node["value"]

    def field(value: Any, msg: Message) -> Any:
        try:
            return value.get(name)
        except AttributeError:
            return None

    return field


def _identity(node: Node) -> Compiled:
    def identity(value: Any, msg: Message) -> Any:
        return value

    return identity


def _literal(node: Node) -> Compiled:
    constant = node["value"]

    def literal(value: Any, msg: Message) -> Any:
        return constant

    return literal


def _chain(node: Node) -> Compiled:
    """subexpression (`a.b`), index_expression (`a[0]`) and pipe (`a | b`)."""
    children: list[Node] = node["children"]
    names = [_field_name(child) for child in children]
    if all(name is not None for name in names):
        path = tuple(names)

        def fields(value: Any, msg: Message) -> Any:
            for name in path:
                try:
                    value = value.get(name)
                except AttributeError:
                    return None  # a field of a non-object is null, and so is all after it
            return value

        return fields
    steps = [_compile(child) for child in children]
    if len(steps) == 2:
        first, second = steps

        def pair(value: Any, msg: Message) -> Any:
            return second(first(value, msg), msg)

        return pair

    def chain(value: Any, msg: Message) -> Any:
        for step in steps:
            value = step(value, msg)
        return value

    return chain


def _comparator(node: Node) -> Compiled:
    kind = node["value"]
    left_node, right_node = node["children"]
    left, right = _compile(left_node), _compile(right_node)
    name = _field_name(left_node)
    if (
        kind in ("eq", "ne")
        and name is not None
        and right_node["type"] == "literal"
        and not is_number(right_node["value"])
        and not isinstance(right_node["value"], bool)
    ):
        # `field == 'text'`: with neither side able to be a number against a boolean,
        # `equal` is plain Python equality.
        constant = right_node["value"]
        negate = kind == "ne"

        def field_equals(value: Any, msg: Message) -> Any:
            try:
                found = value.get(name)
            except AttributeError:
                found = None
            return (found == constant) is not negate

        return field_equals
    if kind == "eq":

        def eq(value: Any, msg: Message) -> Any:
            return equal(left(value, msg), right(value, msg))

        return eq
    if kind == "ne":

        def ne(value: Any, msg: Message) -> Any:
            return not equal(left(value, msg), right(value, msg))

        return ne
    compare = _ORDERING[kind]
    if name is not None and right_node["type"] == "literal" and is_number(right_node["value"]):
        # The common `field > `number``, without a call per side.
        limit = right_node["value"]

        def field_to_number(value: Any, msg: Message) -> Any:
            try:
                found = value.get(name)
            except AttributeError:
                return None
            found_type = type(found)
            if found_type is int or found_type is float or _orderable(found):
                return compare(found, limit)
            return None

        return field_to_number

    def ordering(value: Any, msg: Message) -> Any:
        a, b = left(value, msg), right(value, msg)
        if not (_orderable(a) and _orderable(b)):
            return None
        return compare(a, b)

    return ordering


def _or(node: Node) -> Compiled:
    left, right = (_compile(child) for child in node["children"])

    def either(value: Any, msg: Message) -> Any:
        found = left(value, msg)
        # is_false(found), inline: most left sides are comparisons giving true or false.
        if found is False or found is None or (isinstance(found, (str, list, dict)) and not found):
            return right(value, msg)
        return found

    return either


def _and(node: Node) -> Compiled:
    left, right = (_compile(child) for child in node["children"])

    def both(value: Any, msg: Message) -> Any:
        found = left(value, msg)
        # is_false(found), inline (see either).
        if found is False or found is None or (isinstance(found, (str, list, dict)) and not found):
            return found
        return right(value, msg)

    return both


def _not(node: Node) -> Compiled:
    inner = _compile(node["children"][0])

    def negation(value: Any, msg: Message) -> Any:
        found = inner(value, msg)
        if is_number(found) and found == 0:
            return False  # JMESPath: !0 is false, 0 being truthy
        return not found

    return negation


def _index(node: Node) -> Compiled:
    position = node["value"]

    def index(value: Any, msg: Message) -> Any:
        if not isinstance(value, list):
            return None
        try:
            return value[position]
        except IndexError:
            return None

    return index


def _slice(node: Node) -> Compiled:
    bounds = slice(*node["children"])

    def sliced(value: Any, msg: Message) -> Any:
        if not isinstance(value, list):
            return None
        return value[bounds]

    return sliced


def _multi_select_dict(node: Node) -> Compiled:
    keys = [str(pair["value"]) for pair in node["children"]]
    values: list[Node] = [pair["children"][0] for pair in node["children"]]
    names = [_field_name(child) for child in values]
    if all(name is not None for name in names):
        # `{id: id, ms: latency_ms}`: one C-level pass over the fields.
        wanted = tuple(names)
        nulls = dict.fromkeys(keys)

        def project(value: Any, msg: Message) -> Any:
            if value is None:
                return None
            try:
                get = value.get
            except AttributeError:
                return dict(nulls)
            return dict(zip(keys, map(get, wanted), strict=True))

        return project
    pairs = [(key, _compile(child)) for key, child in zip(keys, values, strict=True)]

    def select(value: Any, msg: Message) -> Any:
        if value is None:
            return None
        return {key: child(value, msg) for key, child in pairs}

    return select


def _multi_select_list(node: Node) -> Compiled:
    children = [_compile(child) for child in node["children"]]

    def select(value: Any, msg: Message) -> Any:
        if value is None:
            return None
        return [child(value, msg) for child in children]

    return select


def _projection(node: Node) -> Compiled:
    left_node, right_node = node["children"]
    left = _compile(left_node)
    if right_node["type"] == "identity":

        def each(value: Any, msg: Message) -> Any:
            base = left(value, msg)
            if not isinstance(base, list):
                return None
            return [element for element in base if element is not None]

        return each
    right = _compile(right_node)

    def project(value: Any, msg: Message) -> Any:
        base = left(value, msg)
        if not isinstance(base, list):
            return None
        return _collect(base, right, msg)

    return project


def _value_projection(node: Node) -> Compiled:
    left, right = (_compile(child) for child in node["children"])

    def project(value: Any, msg: Message) -> Any:
        base = left(value, msg)
        try:
            elements = base.values()
        except AttributeError:
            return None
        return _collect(elements, right, msg)

    return project


def _collect(elements: Iterable[Any], right: Compiled, msg: Message) -> list[Any]:
    """`right` of each element, without the None results: what a projection yields."""
    collected = []
    for element in elements:
        found = right(element, msg)
        if found is not None:
            collected.append(found)
    return collected


def _filter_projection(node: Node) -> Compiled:
    left, right, condition = (_compile(child) for child in node["children"])

    def select(value: Any, msg: Message) -> Any:
        base = left(value, msg)
        if not isinstance(base, list):
            return None
        collected = []
        for element in base:
            if not is_false(condition(element, msg)):
                found = right(element, msg)
                if found is not None:
                    collected.append(found)
        return collected

    return select


def _flatten(node: Node) -> Compiled:
    inner = _compile(node["children"][0])

    def flatten(value: Any, msg: Message) -> Any:
        base = inner(value, msg)
        if not isinstance(base, list):
            return None
        merged: list[Any] = []
        for element in base:
            if isinstance(element, list):
                merged.extend(element)
            else:
                merged.append(element)
        return merged

    return flatten


def _function(node: Node) -> Compiled:
    name: str = node["value"]
    arg_nodes: list[Node] = node["children"]
    if any(arg["type"] == "expref" for arg in arg_nodes):
        # sort_by(@, &key) and friends call back into the interpreter for the reference.
        return interpreted(node)
    native = _native_function(name, arg_nodes)
    if native is not None:
        return native
    args = [_compile(arg) for arg in arg_nodes]

    def call(value: Any, msg: Message) -> Any:
        # LoomFunctions checks argument types and raises jmespath's errors for them.
        return LoomFunctions(msg).call_function(name, [arg(value, msg) for arg in args])

    return call


def _native_function(name: str, arg_nodes: list[Node]) -> Compiled | None:
    """loom's envelope functions, read straight from the message when that is exact."""
    if name == "sender" and not arg_nodes:

        def sender(value: Any, msg: Message) -> Any:
            return msg.sender

        return sender
    if name == "is_error" and not arg_nodes:

        def is_error(value: Any, msg: Message) -> Any:
            return msg.error

        return is_error
    if name == "envelope" and len(arg_nodes) == 1:
        arg = arg_nodes[0]
        if arg["type"] == "literal" and arg["value"] in ENVELOPE_FIELDS:
            field_name = str(arg["value"])

            def envelope(value: Any, msg: Message) -> Any:
                return envelope_field(msg, field_name)

            return envelope
    if name == "from_json" and len(arg_nodes) == 1:
        text_of = _compile(arg_nodes[0])

        def from_json(value: Any, msg: Message) -> Any:
            text = text_of(value, msg)
            if type(text) is str:
                return parse_body(text)
            return LoomFunctions(msg).call_function(name, [text])  # raises the type error

        return from_json
    return None


_RULES: dict[str, Callable[[Node], Compiled]] = {
    "field": _field,
    "current": _identity,
    "identity": _identity,
    "literal": _literal,
    "subexpression": _chain,
    "index_expression": _chain,
    "pipe": _chain,
    "comparator": _comparator,
    "or_expression": _or,
    "and_expression": _and,
    "not_expression": _not,
    "index": _index,
    "slice": _slice,
    "multi_select_dict": _multi_select_dict,
    "multi_select_list": _multi_select_list,
    "projection": _projection,
    "value_projection": _value_projection,
    "filter_projection": _filter_projection,
    "flatten": _flatten,
    "function_expression": _function,
}


def required_text(node: Node) -> str | None:
    """A text that any JSON document must contain, unless it has a backslash, for `node`
    to be true on it; None when there is none this knows of.

    `level == 'error'` can only hold when the document has the string `"error"` in it:
    written without escapes (which need a backslash) a JSON string is its characters
    between quotes. Text that is not JSON evaluates as a string, whose fields are null.
    """
    kind = node["type"]
    if kind == "and_expression":
        left, right = node["children"]
        return required_text(left) or required_text(right)
    if kind != "comparator" or node["value"] != "eq":
        return None
    path, literal = node["children"]
    if literal["type"] != "literal" or type(literal["value"]) is not str:
        return None
    steps = path["children"] if path["type"] == "subexpression" else [path]
    if not all(step["type"] == "field" for step in steps):
        return None
    text: str = literal["value"]
    if any(char in '"\\' or char < " " for char in text):
        return None  # JSON writes these escaped
    return f'"{text}"'
