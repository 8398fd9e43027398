"""Files and streams loom reads for a config or a message are bounded (docs/operations.md):
a device, a FIFO nobody writes to or a huge file gets one clear line, never a hang or a
memory blow-up."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import run_loom, spawn_loom, wait_for
from hypothesis import given
from hypothesis import strategies as st

from loom.store.files import (
    CONFIG_LIMIT,
    MESSAGE_BODY_LIMIT,
    PROMPT_LIMIT,
    json_encoder,
    load_json,
)


def fifo(tmp_path: Path) -> Path:
    """A FIFO with no writer: opening it for reading would block forever."""
    path = tmp_path / "pipe.fifo"
    os.mkfifo(path)
    return path


def huge(tmp_path: Path) -> Path:
    """A 100 MB file (sparse: it costs no disk)."""
    path = tmp_path / "huge.txt"
    with open(path, "wb") as f:
        f.truncate(100 * 1000 * 1000)
    return path


def device(tmp_path: Path) -> Path:
    return Path("/dev/zero")


BAD_FILES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "dev-zero": (device, "is a device, not a regular file"),
    "fifo": (fifo, "is a FIFO, not a regular file"),
    "100mb": (huge, "is larger than"),
}


@pytest.fixture(params=sorted(BAD_FILES))
def bad(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, str]:
    make, says = BAD_FILES[request.param]
    return make(tmp_path), says


def one_clear_line(stderr: str, *needles: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_validate_and_up_refuse_a_system_file_that_is_not_a_bounded_file(
    tmp_path: Path, bad: tuple[Path, str], loom_home: Path
) -> None:
    path, says = bad
    config = tmp_path / "loom.yml"
    config.write_text(
        f"version: 1\nagents:\n  - name: a\n    model: echo\n    system_file: {path}\n"
    )
    for command in ("validate", "up"):
        started = time.monotonic()
        r = run_loom(command, "--config", str(config), timeout=30)
        assert time.monotonic() - started < 20
        assert r.returncode == 2, (command, r.stderr)
        one_clear_line(r.stderr, str(path), says, "system_file", "loom.yml:5")
    assert not (loom_home / "supervisor.pid").exists()


def test_the_config_file_itself_is_bounded(tmp_path: Path, bad: tuple[Path, str]) -> None:
    path, says = bad
    for command in ("validate", "up"):
        r = run_loom(command, "--config", str(path), timeout=30)
        assert r.returncode == 2, (command, r.stderr)
        one_clear_line(r.stderr, str(path), says)


def test_the_limits_name_their_size(tmp_path: Path) -> None:
    config = tmp_path / "loom.yml"
    with open(config, "wb") as f:
        f.write(b"version: 1\n# " + b"x" * CONFIG_LIMIT + b"\n")
    r = run_loom("validate", "--config", str(config))
    assert r.returncode == 2
    one_clear_line(r.stderr, f"config file {config} is larger than 4 MiB")


def test_a_pipe_definition_file_is_bounded(tmp_path: Path, bad: tuple[Path, str]) -> None:
    path, says = bad
    (tmp_path / "pipes").mkdir()
    (tmp_path / "pipes" / "triage.yml").symlink_to(path)
    r = run_loom("pipe", "run", "triage", input="{}\n", cwd=tmp_path, timeout=30)
    assert r.returncode == 2
    one_clear_line(r.stderr, says)
    r = run_loom("pipe", "create", "triage", str(path), timeout=30)
    assert r.returncode == 2
    one_clear_line(r.stderr, str(path), says)


def test_system_file_on_the_command_line_is_bounded(tmp_path: Path, bad: tuple[Path, str]) -> None:
    path, says = bad
    r = run_loom(
        "agent", "start", "a", "--model", "echo", "--system-file", str(path), "--stdin",
        input="hi", timeout=30,
    )  # fmt: skip
    assert r.returncode == 2
    one_clear_line(r.stderr, "--system-file", str(path), says)


def test_send_file_is_bounded(tmp_path: Path, bad: tuple[Path, str], loom_home: Path) -> None:
    path, says = bad
    r = run_loom("send", "a", "--create", "--file", str(path), timeout=30)
    assert r.returncode == 2
    one_clear_line(r.stderr, "--file", str(path), says)
    assert not list(loom_home.glob("agents/a/inbox/*.msg"))


def test_a_body_on_stdin_past_the_limit_is_refused_and_nothing_is_sent(loom_home: Path) -> None:
    body = b"x" * (MESSAGE_BODY_LIMIT + 1)
    for command in (
        ["send", "a", "--create", "--stdin"],
        ["agent", "start", "a", "--model", "echo", "--stdin"],
    ):
        r = run_loom(*command, input=body, timeout=60)
        assert r.returncode == 2, (command, r.stderr[-300:])
        one_clear_line(r.stderr, "stdin is larger than 32 MiB")
        assert not list(loom_home.glob("agents/a/inbox/*.msg"))
        assert not list(loom_home.glob("agents/a/inbox/.*/*.msg"))


def test_a_body_at_the_limit_is_sent(loom_home: Path) -> None:
    r = run_loom("send", "a", "--create", "--stdin", input=b"x" * MESSAGE_BODY_LIMIT, timeout=60)
    assert r.returncode == 0, r.stderr
    [sent] = loom_home.glob("agents/a/inbox/*.msg")
    assert len(json.loads(sent.read_text())["body"]) == MESSAGE_BODY_LIMIT


def test_a_bad_memory_file_fails_the_message_not_the_runner(
    loom_home: Path, tmp_path: Path, reap: list
) -> None:
    memory = loom_home / "agents/a/memory"
    memory.mkdir(parents=True)
    (memory / "notes.md").symlink_to(huge(tmp_path))
    runner = spawn_loom("agent", "start", "a", "--model", "echo")
    reap.append(runner)
    wait_for(lambda: (loom_home / "agents/a/status").exists(), what="the runner to start")
    assert run_loom("send", "a", "first").returncode == 0
    failed = loom_home / "agents/a/inbox/.failed"
    [record] = wait_for(lambda: list(failed.glob("*.error.json")), what="the failure record")
    error = json.loads(record.read_text())
    assert error["error_type"] == "prompt_unreadable"
    assert f"memory file {memory / 'notes.md'} is larger than" in error["last_error"]
    assert f"{PROMPT_LIMIT // (1 << 20)} MiB" in error["last_error"]
    (memory / "notes.md").unlink()
    (memory / "notes.md").write_text("be brief")
    assert run_loom("send", "a", "second").returncode == 0
    processed = loom_home / "agents/a/inbox/.processed"
    wait_for(lambda: list(processed.glob("*.msg")), what="the second message answered")
    assert runner.poll() is None
    bodies = sorted(
        json.loads(p.read_text())["body"] for p in (loom_home / "agents/a/outbox").iterdir()
    )
    assert "second" in bodies and any("larger than" in b for b in bodies)


JSONISH = st.text(alphabet='{}[]":,0123456789.eE+- \t\n\r\x0b\u2028abtrufnlsNI\\', max_size=12)
# Around a value: JSON's whitespace, and characters that only look like it.
SPACES = st.text(alphabet=" \t\n\r\x0b\x0c\x1c\x85\u2028\u3000x", max_size=3)
VALUES = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=6,
).map(json.dumps)


def outcome(parse: Callable[[str], object], text: str) -> tuple[str, str]:
    try:
        return "value", repr(parse(text))
    except ValueError:
        return "refused", ""


@given(st.one_of(JSONISH, st.tuples(SPACES, VALUES, SPACES).map("".join)))
def test_load_json_takes_and_refuses_what_json_loads_does(text: str) -> None:
    # load_json reads a text that is one value with the decoder's scanner directly.
    assert outcome(load_json, text) == outcome(json.loads, text)


# Any JSON value, and text with every code point: lone surrogates, controls, non-BMP.
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=6)
ENCODABLE = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ANY_TEXT, inner, max_size=3),
    max_leaves=8,
)
SEPARATORS = st.sampled_from([(", ", ": "), (",", ":"), (" ,", " :  ")])


@given(ENCODABLE, st.booleans(), SEPARATORS)
def test_json_encoder_writes_what_json_encoder_does(
    value: object, ascii_only: bool, separators: tuple[str, str]
) -> None:
    # The encoder built once (log lines, messages, request bodies) and the standard one.
    mine = json_encoder(ensure_ascii=ascii_only, separators=separators)
    standard = json.JSONEncoder(ensure_ascii=ascii_only, separators=separators)
    assert mine(value) == standard.encode(value)


def test_json_encoder_calls_its_default_and_refuses_a_value_that_contains_itself() -> None:
    encode = json_encoder(ensure_ascii=False, default=str)
    assert encode({"at": Path("/x"), "n": [1.5]}) == '{"at": "/x", "n": [1.5]}'
    with pytest.raises(TypeError):
        json_encoder()({"at": Path("/x")})
    looped: list[object] = []
    looped.append(looped)
    with pytest.raises(RecursionError):
        encode(looped)
    assert encode(["after", "the", "refusal"]) == '["after", "the", "refusal"]'
