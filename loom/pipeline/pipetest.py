"""`loom test`: unit tests for pipes, written in YAML beside them (`<name>.test.yml`).

A test file names a pipe (default: the sibling `<name>.yml`) and lists cases; each case
pushes its inputs through a fresh in-memory Pipeline and compares what comes out with
what it expects. The format is documented in docs/pipes.md ("Testing pipes").
"""

from __future__ import annotations

import difflib
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loom.errors import ConfigError, LoomError, UsageError
from loom.pipeline import PipeDef, Pipeline, load_definition
from loom.pipeline.yaml_lines import LineDict, LineList, read_yaml
from loom.store.files import CONFIG_LIMIT, read_bounded
from loom.store.ids import new_id
from loom.store.message import ID_RE, Message, new_message

TEST_SUFFIXES = (".test.yml", ".test.yaml")
INPUT_SENDER = "test"
_FILE_KEYS = {"pipe", "tests"}
_CASE_KEYS = {
    "name",
    "input",
    "expect",
    "expect_to",
    "expect_envelopes",
    "expect_dropped",
    "flush",
}
_ENVELOPE_KEYS = {"from", "body", "origin", "error", "to", "id", "ts"}
# Held messages (throttle) are released by advancing a virtual clock; this bounds it.
_MAX_TIMER_ROUNDS = 100_000


class MalformedTest(UsageError):
    """A test file that cannot be read; the message names the file and the line."""


@dataclass(frozen=True)
class Case:
    """One test case: its inputs as messages and its expectations (None = not checked)."""

    name: str
    line: int
    inputs: list[Message]
    expect: list[Any] | None = None
    expect_to: list[tuple[str, ...] | None] | None = None
    expect_envelopes: list[dict[str, Any]] | None = None
    expect_dropped: int | None = None
    flush: bool = True


@dataclass(frozen=True)
class Suite:
    """A parsed test file: the pipe under test and its cases."""

    path: Path
    definition: PipeDef
    cases: list[Case]


@dataclass
class Outcome:
    """The result of one case, or of a test file that could not be read (`case` None)."""

    path: Path
    case: Case | None
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.case is not None and not self.problems

    @property
    def malformed(self) -> bool:
        return self.case is None


# --- reading test files -----------------------------------------------------------


def discover(path: Path | None = None) -> list[Path]:
    """The test files to run: `path` itself, every `*.test.yml` under it, or under ./pipes."""
    root = Path("pipes") if path is None else path
    if path is None and not root.is_dir():
        raise UsageError("there is no ./pipes folder here; give a test file or folder")
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise UsageError(f"{root} does not exist; give a test file or a folder of them")
    found = sorted({p for suffix in TEST_SUFFIXES for p in root.rglob(f"*{suffix}")})
    if not found:
        raise UsageError(f"no *.test.yml files under {root}")
    return found


def load(path: Path, home: Path | None = None) -> Suite:
    """Parse and validate a test file; raise MalformedTest naming the file and line."""
    try:
        raw = read_yaml(read_bounded(path, CONFIG_LIMIT, "test file").decode("utf-8"), str(path))
    except OSError as exc:
        raise MalformedTest(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise MalformedTest(f"{path}: not UTF-8 text") from None
    except ConfigError as exc:
        raise MalformedTest(str(exc)) from None
    if not isinstance(raw, LineDict):
        raise MalformedTest(f"{path}:1: expected a mapping with 'tests:' (and optional 'pipe:')")
    _check_keys(path, raw, _FILE_KEYS, "test file")
    tests = raw.get("tests")
    if not isinstance(tests, LineList) or not tests:
        line = raw.key_lines.get("tests", raw.line)
        raise MalformedTest(f"{path}:{line}: 'tests' must be a non-empty list of test cases")
    definition = _definition(path, raw, home)
    cases = [_case(path, item, _line(item, tests)) for item in tests]
    seen: set[str] = set()
    for case in cases:
        if case.name in seen:
            raise MalformedTest(f"{path}:{case.line}: duplicate test name {case.name!r}")
        seen.add(case.name)
    return Suite(path, definition, cases)


def _definition(path: Path, raw: LineDict, home: Path | None) -> PipeDef:
    ref = raw.get("pipe")
    line = raw.key_lines.get("pipe", 1)
    if ref is None:
        stem = _stem(path)
        siblings = [path.with_name(stem + ext) for ext in (".yml", ".yaml")]
        target = next((p for p in siblings if p.is_file()), None)
        if target is None:
            raise MalformedTest(
                f"{path}:1: no 'pipe:' given and no sibling {siblings[0].name} to test"
            )
        ref = str(target)
    elif not isinstance(ref, str) or not ref:
        raise MalformedTest(f"{path}:{line}: 'pipe' must be a pipe name or a file path")
    elif "/" in ref or ref.endswith((".yml", ".yaml", ".json")):
        ref = str(path.parent / ref)
    elif (path.parent / f"{ref}.yml").is_file():
        ref = str(path.parent / f"{ref}.yml")
    try:
        return load_definition(ref, home)
    except LoomError as exc:
        raise MalformedTest(f"{path}:{line}: pipe {raw.get('pipe') or ref}: {exc}") from None


def _line(item: Any, container: LineList | LineDict) -> int:
    """The line of `item` if YAML recorded one, else the line of its container."""
    return getattr(item, "line", None) or container.line or 1


def _stem(path: Path) -> str:
    for suffix in TEST_SUFFIXES:
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return path.stem


def _check_keys(path: Path, raw: LineDict, allowed: set[str], what: str) -> None:
    for key in raw:
        if key not in allowed:
            line = raw.key_lines.get(str(key), raw.line)
            known = ", ".join(sorted(allowed))
            raise MalformedTest(f"{path}:{line}: unknown key {key!r} in {what} (known: {known})")


def _case(path: Path, raw: Any, line: int) -> Case:
    if not isinstance(raw, LineDict):
        raise MalformedTest(f"{path}:{line}: a test case must be a mapping with name and input")
    _check_keys(path, raw, _CASE_KEYS, "test case")

    def where(key: str) -> str:
        return f"{path}:{raw.key_lines.get(key, raw.line)}"

    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise MalformedTest(f"{where('name')}: every test case needs a 'name' (a string)")
    inputs = raw.get("input")
    if not isinstance(inputs, LineList):
        raise MalformedTest(f"{where('input')}: 'input' must be a list of messages")
    checks = [key for key in _CASE_KEYS if key.startswith("expect") and key in raw]
    if not checks:
        raise MalformedTest(
            f"{where('name')}: test {name!r} checks nothing; give expect, expect_to, "
            "expect_envelopes or expect_dropped"
        )
    messages = [_input_message(path, item, _line(item, inputs)) for item in inputs]
    for key in ("expect", "expect_to", "expect_envelopes"):
        if key in raw and not isinstance(raw[key], LineList):
            raise MalformedTest(f"{where(key)}: '{key}' must be a list, one item per output")
    expect_to = None
    if "expect_to" in raw:
        expect_to = [_destinations(where("expect_to"), item) for item in raw["expect_to"]]
    envelopes = raw.get("expect_envelopes")
    if envelopes is not None and not all(isinstance(e, LineDict) for e in envelopes):
        raise MalformedTest(
            f"{where('expect_envelopes')}: each expected envelope must be a mapping of fields"
        )
    dropped = raw.get("expect_dropped")
    if dropped is not None and (type(dropped) is not int or dropped < 0):
        raise MalformedTest(f"{where('expect_dropped')}: 'expect_dropped' must be a count")
    flush = raw.get("flush", True)
    if not isinstance(flush, bool):
        raise MalformedTest(f"{where('flush')}: 'flush' must be true or false")
    return Case(
        name=name,
        line=raw.line or line,
        inputs=messages,
        expect=list(raw["expect"]) if "expect" in raw else None,
        expect_to=expect_to,
        expect_envelopes=[dict(e) for e in envelopes] if envelopes is not None else None,
        expect_dropped=dropped,
        flush=flush,
    )


def _input_message(path: Path, item: Any, line: int) -> Message:
    """A string is the body; `{envelope: {...}}` a full message; anything else JSON."""
    if isinstance(item, str):
        return new_message(INPUT_SENDER, item)
    if not (isinstance(item, LineDict) and list(item) == ["envelope"]):
        return new_message(INPUT_SENDER, _json(item))
    fields = item["envelope"]
    if not isinstance(fields, LineDict):
        raise MalformedTest(f"{path}:{line}: 'envelope' must be a mapping of message fields")
    _check_keys(path, fields, _ENVELOPE_KEYS, "envelope")
    if "body" not in fields:
        raise MalformedTest(f"{path}:{fields.line}: an input envelope needs a 'body'")
    body = fields["body"]
    sender = fields.get("from", INPUT_SENDER)
    origin = fields.get("origin")
    error = fields.get("error", False)
    ts, mid = new_id()
    mid, ts = fields.get("id", mid), fields.get("ts", ts)
    valid = (
        isinstance(sender, str)
        and isinstance(error, bool)
        and (origin is None or isinstance(origin, str))
        and isinstance(mid, str)
        and ID_RE.fullmatch(mid) is not None
        and type(ts) is int
    )
    if not valid:
        raise MalformedTest(
            f"{path}:{fields.line}: in an input envelope, 'from' and 'origin' are strings, "
            "'error' is true or false, 'id' is letters and digits, 'ts' is an integer"
        )
    return Message(
        id=mid,
        sender=sender,
        ts=ts,
        body=body if isinstance(body, str) else _json(body),
        origin=origin or None,
        error=error,
        to=_destinations(f"{path}:{fields.line}", fields.get("to")),
    )


def _destinations(where: str, item: Any) -> tuple[str, ...] | None:
    if item is None:
        return None
    if isinstance(item, str):
        return (item,)
    if isinstance(item, list) and all(isinstance(d, str) for d in item):
        return tuple(item)
    raise MalformedTest(f"{where}: a destination list is a list of names (or one name, or null)")


def _json(value: Any) -> str:
    # default=str: YAML reads 2024-01-01 as a date, which JSON has no type for.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


# --- running ----------------------------------------------------------------------


@dataclass
class _Run:
    outputs: list[Message]
    dropped: int
    errors: list[str]
    stderr: str


def _execute(definition: PipeDef, case: Case) -> _Run:
    # What operators log (command stderr, timeouts) is kept, and shown only on failure.
    captured = io.StringIO()
    pipeline = Pipeline(definition, instance=definition.name, stderr=captured)
    outputs: list[Message] = []
    errors: list[str] = []
    try:
        for number, message in enumerate(case.inputs, 1):
            try:
                outputs.extend(pipeline.push(message))
            except LoomError as exc:
                errors.append(f"input {number}: {exc}")
        if case.flush:
            outputs.extend(pipeline.flush())
            outputs.extend(_release_held(pipeline))
        # Batches released by time or at the end fail inside the engine, not in push().
        errors.extend(f"a released batch: {failure}" for failure in pipeline.failures)
        dropped = sum(pipeline.drops.values())
    finally:
        pipeline.close()
    return _Run(outputs, dropped, errors, captured.getvalue())


def _release_held(pipeline: Pipeline) -> list[Message]:
    """Whatever timed operators still hold, released by advancing a virtual clock."""
    released: list[Message] = []
    for _ in range(_MAX_TIMER_ROUNDS):
        deadline = pipeline.next_deadline()
        if deadline is None:
            break
        released.extend(pipeline.poll(now=deadline))
    return released


def run_case(suite: Suite, case: Case) -> Outcome:
    """Run one case on a fresh in-memory pipeline and compare."""
    try:
        result = _execute(suite.definition, case)
    except LoomError as exc:
        return Outcome(suite.path, case, [f"the pipe failed: {exc}"])
    problems = [f"operator error on {error}" for error in result.errors]
    bodies = [message.body for message in result.outputs]
    if case.expect is not None:
        problems += _compare("output bodies", case.expect, bodies, _body_matches, _show_body)
    if case.expect_to is not None:
        actual_to = [message.to for message in result.outputs]
        problems += _compare("output destinations (to)", case.expect_to, actual_to, _eq, _show)
    if case.expect_envelopes is not None:
        envelopes = [message.to_dict() for message in result.outputs]
        problems += _compare(
            "output envelopes", case.expect_envelopes, envelopes, _envelope_matches, _show_envelope
        )
    if case.expect_dropped is not None and case.expect_dropped != result.dropped:
        problems.append(f"dropped: expected {case.expect_dropped}, got {result.dropped}")
    if problems and result.stderr.strip():
        problems.append("what the pipe logged:\n" + result.stderr.rstrip("\n"))
    return Outcome(suite.path, case, problems)


def run(path: Path | None = None, home: Path | None = None) -> Iterator[Outcome]:
    """Every outcome of every test file under `path` (default ./pipes), in order."""
    for test_file in discover(path):
        try:
            suite = load(test_file, home)
        except MalformedTest as exc:
            yield Outcome(test_file, None, [str(exc)])
            continue
        for case in suite.cases:
            yield run_case(suite, case)


# --- comparing and reporting --------------------------------------------------------


def _parse(body: str) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return _NOT_JSON


_NOT_JSON = object()


def _body_matches(expected: Any, body: str) -> bool:
    # A string is compared as is; anything else with the body parsed as JSON.
    if isinstance(expected, str):
        return expected == body
    return bool(_same_json(expected, _parse(body)))


def _same_json(expected: Any, actual: Any) -> bool:
    # Python's True == 1; JSON's true is not 1.
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(expected) is type(actual) and expected == actual
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and expected.keys() == actual.keys()
            and all(_same_json(v, actual[k]) for k, v in expected.items())
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(_same_json(e, a) for e, a in zip(expected, actual, strict=True))
        )
    return bool(expected == actual)


def _envelope_matches(expected: dict[str, Any], actual: dict[str, Any]) -> bool:
    for key, value in expected.items():
        if key not in actual and value is not None:
            return False
        if key == "body":
            if not _body_matches(value, actual["body"]):
                return False
        elif key == "to":
            if _destinations("", value) != (tuple(actual["to"]) if "to" in actual else None):
                return False
        elif not _same_json(value, actual.get(key)):
            return False
    return True


def _eq(expected: Any, actual: Any) -> bool:
    return bool(expected == actual)


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        value = list(value)
    return _json(value)


def _show_body(body: Any) -> str:
    if isinstance(body, str):
        return body
    return json.dumps(body, ensure_ascii=False, sort_keys=True, default=str)


def _show_envelope(envelope: dict[str, Any]) -> str:
    return json.dumps(envelope, ensure_ascii=False, sort_keys=True, default=str)


def _compare(
    what: str,
    expected: list[Any],
    actual: list[Any],
    matches: Callable[[Any, Any], bool],
    show: Callable[[Any], str],
) -> list[str]:
    """Nothing when every item matches, else one problem with a unified diff."""
    if len(expected) == len(actual) and all(
        matches(e, a) for e, a in zip(expected, actual, strict=True)
    ):
        return []
    left = [show(e) for e in expected]
    right = []
    for index, item in enumerate(actual):
        # Render an item the way its expectation is written, so equal lines mean a match.
        if index < len(expected) and matches(expected[index], item):
            right.append(left[index])
        else:
            right.append(_render_actual(item, expected[index] if index < len(expected) else None))
    diff = difflib.unified_diff(left, right, "expected", "actual", lineterm="")
    header = f"{what} differ:"
    if len(expected) != len(actual):
        header = f"{what} differ (expected {len(expected)}, got {len(actual)}):"
    return ["\n".join([header, *diff])]


def _render_actual(item: Any, expected: Any) -> str:
    if isinstance(item, str) and not isinstance(expected, str):
        parsed = _parse(item)
        if parsed is not _NOT_JSON:
            return _show_body(parsed)
    if isinstance(item, dict):
        return _show_envelope(item)
    if isinstance(item, str):
        return item
    return _show(item)


def format_outcome(outcome: Outcome, base: Path | None = None) -> str:
    """One line (`ok`, `FAIL` or `ERROR`), then indented details for a failure."""
    shown = _relative(outcome.path, base)
    if outcome.case is None:
        return f"ERROR {outcome.problems[0]}"
    head = f"{shown}:{outcome.case.line}: {outcome.case.name}"
    if outcome.passed:
        return f"ok    {head}"
    details = "\n".join(outcome.problems)
    return f"FAIL  {head}\n" + "\n".join("      " + line for line in details.splitlines())


def _relative(path: Path, base: Path | None) -> str:
    base = base or Path.cwd()
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)


def summary(outcomes: list[Outcome]) -> tuple[str, int]:
    """The closing line and the exit code: 0 all passed, 1 a failure, 2 a malformed file."""
    passed = sum(o.passed for o in outcomes)
    malformed = sum(o.malformed for o in outcomes)
    failed = len(outcomes) - passed - malformed
    line = f"{passed} passed, {failed} failed"
    if malformed:
        line += f", {malformed} malformed test file" + ("s" if malformed > 1 else "")
    return line, 2 if malformed else 1 if failed else 0
