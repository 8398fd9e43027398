"""YAML loading that remembers line numbers, so definition errors can name the line (SPEC 9).

Mappings load as LineDict and sequences as LineList: plain dict/list subclasses with a
`line` attribute (1-based) and, for mappings, `key_lines` (key -> line). Duplicate keys
are an error instead of silently keeping the last one. yaml is imported here, lazily,
so importing loom stays fast.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

from loom.errors import ConfigError


class YamlError(ConfigError):
    """A file that is not YAML: `FILE:LINE:COL: invalid YAML: ...`, the place kept apart."""

    def __init__(
        self, source: str, problem: str, line: int | None = None, column: int | None = None
    ) -> None:
        self.source = source
        self.problem = problem
        self.line = line
        self.column = column
        where = f"{source}:{line}:{column}" if line is not None else source
        super().__init__(f"{where}: {problem}")


class LineDict(dict[Any, Any]):
    """A mapping read from YAML, with the line of itself and of each key."""

    line: int | None = None
    column: int | None = None
    key_lines: dict[str, int] = {}  # noqa: RUF012  (replaced per instance)
    # (line, column) of each key and of each scalar value, both 1-based.
    key_marks: dict[str, tuple[int, int]] = {}  # noqa: RUF012
    value_marks: dict[str, tuple[int, int]] = {}  # noqa: RUF012
    # Where the characters of a one-line scalar value start (after an opening quote), for
    # values whose text in the file is exactly the value: an offset into it is a column.
    text_marks: dict[str, tuple[int, int]] = {}  # noqa: RUF012


class LineList(list[Any]):
    """A sequence read from YAML, with its line (and column, and each item's mark)."""

    line: int | None = None
    column: int | None = None
    item_marks: list[tuple[int, int]] = []  # noqa: RUF012


def _text_start(node: Any) -> tuple[int, int] | None:
    """(line, column) of a scalar's first character when the file holds it verbatim."""
    value = getattr(node, "value", None)
    start, end = node.start_mark, node.end_mark
    if not isinstance(value, str) or start.line != end.line:
        return None
    quote = 1 if node.style in ("'", '"') else 0
    if node.style not in (None, "", "'", '"') or end.index - start.index != len(value) + 2 * quote:
        return None  # a block scalar, or escapes: offsets into the value are not columns
    return (start.line + 1, start.column + 1 + quote)


@functools.cache
def _loader() -> type:
    import yaml

    # libyaml's parser when PyYAML was built with it: several times faster on big files.
    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class LineLoader(base):  # type: ignore[valid-type,misc]
        pass

    def construct_map(loader: Any, node: Any) -> Iterator[LineDict]:
        data = LineDict()
        data.line = node.start_mark.line + 1
        data.column = node.start_mark.column + 1
        data.key_lines = {}
        data.key_marks = {}
        data.value_marks = {}
        data.text_marks = {}
        yield data
        loader.flatten_mapping(node)
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            try:
                duplicate = key in data
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    "found a key that is not a string",
                    key_node.start_mark,
                ) from None
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            data[key] = loader.construct_object(value_node, deep=True)
            data.key_lines[str(key)] = key_node.start_mark.line + 1
            data.key_marks[str(key)] = (
                key_node.start_mark.line + 1,
                key_node.start_mark.column + 1,
            )
            data.value_marks[str(key)] = (
                value_node.start_mark.line + 1,
                value_node.start_mark.column + 1,
            )
            text = _text_start(value_node)
            if text is not None:
                data.text_marks[str(key)] = text

    def construct_seq(loader: Any, node: Any) -> Iterator[LineList]:
        data = LineList()
        data.line = node.start_mark.line + 1
        data.column = node.start_mark.column + 1
        data.item_marks = [(c.start_mark.line + 1, c.start_mark.column + 1) for c in node.value]
        yield data
        data.extend(loader.construct_object(child, deep=True) for child in node.value)

    LineLoader.add_constructor("tag:yaml.org,2002:map", construct_map)
    LineLoader.add_constructor("tag:yaml.org,2002:seq", construct_seq)
    return LineLoader


def read_yaml(text: str, source: str) -> Any:
    """Parse one YAML document; a syntax error is a ConfigError naming `source` and the line."""
    import yaml

    try:
        return yaml.load(text, Loader=_loader())  # noqa: S506  (a SafeLoader subclass)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at_end = mark is not None and mark.line >= len(text.splitlines())
        if at_end and exc.context_mark is not None:
            # Found at the end of the input (an unclosed bracket or quote): where the
            # unfinished thing started is what the user needs to see.
            mark = exc.context_mark
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        if mark is None:
            raise YamlError(source, f"invalid YAML: {problem}") from None
        raise YamlError(
            source, f"invalid YAML: {problem}", mark.line + 1, mark.column + 1
        ) from None
    except yaml.YAMLError as exc:
        raise YamlError(source, f"invalid YAML: {exc}") from None
