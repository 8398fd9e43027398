"""The JSON Schema subset that model APIs accept for structured output, checked and applied.

`check_schema` refuses a schema loom cannot enforce (an unknown keyword, a wrong type,
a root that is not an object); `problems` lists where a value breaks a schema. The
keywords are those OpenAI's strict mode, Ollama's `format` and Anthropic's tool input
schemas have in common: type (a name or a list, "null" among them for nullable values),
properties, required, additionalProperties, enum, const, items, anyOf, minimum, maximum,
minLength, maxLength, pattern; description, title and $schema are annotations.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from loom.errors import UsageError
from loom.store.files import load_json, read_bounded_text

TYPES = ("object", "array", "string", "number", "integer", "boolean", "null")
ANNOTATIONS = ("description", "title", "$schema", "default", "examples")
KEYWORDS = (
    "type",
    "properties",
    "required",
    "additionalProperties",
    "enum",
    "const",
    "items",
    "anyOf",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    *ANNOTATIONS,
)
# A schema text or file past this is not a reply format but a mistake (and it must fit
# the agent folder's one-line files).
SCHEMA_LIMIT = 32 * 1024


class SchemaInvalid(UsageError):
    """A schema loom cannot use; the message says where and why, in one sentence."""


def parse_schema(text: str, source: str) -> dict[str, Any]:
    """The schema in `text` (JSON), checked; SchemaInvalid names `source` when it is not one."""
    try:
        value = load_json(text)
    except ValueError as exc:
        raise SchemaInvalid(f"{source} is not JSON: {exc}") from None
    check_schema(value, source)
    return dict(value)


def load_schema(value: str, what: str = "--schema") -> dict[str, Any]:
    """A schema given as JSON text (it starts with `{`) or as the path of a JSON file,
    checked; SchemaInvalid or UsageError say which argument was wrong."""
    if value.lstrip().startswith("{"):
        if len(value.encode("utf-8")) > SCHEMA_LIMIT:
            raise UsageError(f"{what} is longer than {SCHEMA_LIMIT} bytes")
        return parse_schema(value, what)
    label = f"{what} {value}"
    try:
        text = read_bounded_text(value, SCHEMA_LIMIT, label)
    except OSError as exc:
        raise UsageError(f"cannot read {label}: {exc.strerror}") from None
    return parse_schema(text, label)


def check_schema(schema: Any, source: str = "the schema") -> None:
    """Raise SchemaInvalid unless `schema` is an object schema in the supported subset."""
    if not isinstance(schema, Mapping):
        raise SchemaInvalid(f"{source} must be a JSON object, not {_kind(schema)}")
    if _types(schema) != ["object"]:
        raise SchemaInvalid(
            f'{source} must describe an object at its root (`"type": "object"`): '
            "every provider's structured output wants one"
        )
    problem = _schema_problem(schema, "")
    if problem is not None:
        raise SchemaInvalid(f"{source}: {problem}")


def _schema_problem(schema: Any, at: str) -> str | None:
    where = at or "the root"
    if not isinstance(schema, Mapping):
        return f"{where} must be a schema object, not {_kind(schema)}"
    for key in schema:
        if key not in KEYWORDS:
            return f"unsupported keyword '{key}' at {where} (supported: {', '.join(KEYWORDS)})"
    types = schema.get("type")
    if types is not None:
        names = types if isinstance(types, list) else [types]
        if not names or any(name not in TYPES for name in names):
            return f"'type' at {where} must be one of {', '.join(TYPES)} (or a list of them)"
    for key in ("minimum", "maximum"):
        if key in schema and not _is_number(schema[key]):
            return f"'{key}' at {where} must be a number"
    for key in ("minLength", "maxLength"):
        value = schema.get(key)
        if key in schema and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            return f"'{key}' at {where} must be a whole number, 0 or more"
    if "pattern" in schema:
        if not isinstance(schema["pattern"], str):
            return f"'pattern' at {where} must be a string"
        try:
            re.compile(schema["pattern"])
        except re.error as exc:
            return f"'pattern' at {where} is not a regular expression: {exc}"
    if "enum" in schema and (not isinstance(schema["enum"], list) or not schema["enum"]):
        return f"'enum' at {where} must be a non-empty list"
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        return f"'required' at {where} must be a list of property names"
    properties = schema.get("properties", {})
    if not isinstance(properties, Mapping):
        return f"'properties' at {where} must map names to schemas"
    children = [(f"{at}.{name}", sub) for name, sub in properties.items()]
    extra = schema.get("additionalProperties", True)
    if not isinstance(extra, bool):
        children.append((f"{at}.*", extra))
    if "items" in schema:
        children.append((f"{at}[]", schema["items"]))
    if "anyOf" in schema:
        options = schema["anyOf"]
        if not isinstance(options, list) or not options:
            return f"'anyOf' at {where} must be a non-empty list of schemas"
        children += [(f"{at}<anyOf {i}>", sub) for i, sub in enumerate(options)]
    for path, sub in children:
        problem = _schema_problem(sub, path)
        if problem is not None:
            return problem
    return None


def problems(value: Any, schema: Mapping[str, Any], at: str = "") -> list[str]:
    """Where `value` breaks `schema` (a checked one): one line each, `$.path: what`."""
    where = "$" + at
    types = _types(schema)
    if types and not any(_is_type(value, t) for t in types):
        return [f"{where}: expected {' or '.join(types)}, got {_kind(value)}"]
    found: list[str] = []
    if "const" in schema and not _same(value, schema["const"]):
        found.append(f"{where}: must be {json.dumps(schema['const'])}")
    if "enum" in schema and not any(_same(value, option) for option in schema["enum"]):
        options = ", ".join(json.dumps(option) for option in schema["enum"])
        found.append(f"{where}: {json.dumps(value)} is not one of {options}")
    if "anyOf" in schema and not any(not problems(value, s, at) for s in schema["anyOf"]):
        found.append(f"{where}: matches none of the anyOf schemas")
    if _is_number(value):
        if "minimum" in schema and value < schema["minimum"]:
            found.append(f"{where}: {value} is less than the minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            found.append(f"{where}: {value} is more than the maximum {schema['maximum']}")
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            found.append(f"{where}: shorter than {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            found.append(f"{where}: longer than {schema['maxLength']} characters")
        if "pattern" in schema and re.search(schema["pattern"], value) is None:
            found.append(f"{where}: does not match the pattern {schema['pattern']!r}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            found += problems(item, schema["items"], f"{at}[{index}]")
    if isinstance(value, dict):
        found += _object_problems(value, schema, at)
    return found


def _object_problems(value: dict[str, Any], schema: Mapping[str, Any], at: str) -> list[str]:
    found = [
        f"${at}: '{name}' is required" for name in schema.get("required", []) if name not in value
    ]
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        path = f"{at}.{name}"
        if name in properties:
            found += problems(item, properties[name], path)
        elif extra is False:
            found.append(f"${at}: '{name}' is not an allowed property")
        elif isinstance(extra, Mapping):
            found += problems(item, extra, path)
    return found


def is_strict(schema: Mapping[str, Any]) -> bool:
    """Whether `schema` meets OpenAI's strict mode: every object lists all its properties
    as required and forbids others (its rule for `strict: true`)."""
    if "object" in _types(schema) or "properties" in schema:
        properties = schema.get("properties", {})
        if schema.get("additionalProperties", True) is not False:
            return False
        if set(schema.get("required", [])) != set(properties):
            return False
        if not all(is_strict(sub) for sub in properties.values()):
            return False
    if "items" in schema and not is_strict(schema["items"]):
        return False
    return all(is_strict(sub) for sub in schema.get("anyOf", []))


def parse_reply(text: str) -> Any:
    """The JSON value of a model's reply; a Markdown code fence around it is dropped (models
    without native structured output add one). ValueError when it is not JSON."""
    stripped = text.strip()
    fenced = re.fullmatch(r"```[a-zA-Z]*\n(.*)\n```", stripped, re.S)
    return load_json(fenced.group(1) if fenced else stripped)


def _types(schema: Mapping[str, Any]) -> list[str]:
    types = schema.get("type")
    if types is None:
        return []
    return list(types) if isinstance(types, list) else [types]


def _is_type(value: Any, name: str) -> bool:
    if name == "integer":
        return _is_number(value) and float(value).is_integer()
    if name == "number":
        return _is_number(value)
    python = {"object": dict, "array": list, "string": str, "boolean": bool}
    return value is None if name == "null" else isinstance(value, python[name])


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _same(left: Any, right: Any) -> bool:
    """JSON equality: 1 and 1.0 are equal, true and 1 are not."""
    return json.dumps(left, sort_keys=True) == json.dumps(right, sort_keys=True) or (
        _is_number(left) and _is_number(right) and left == right
    )


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if _is_number(value):
        return "a number"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return "a string" if isinstance(value, str) else type(value).__name__
