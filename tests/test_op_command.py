"""`command`: an external program per message, and the long-lived `stream: true` mode."""

from __future__ import annotations

import io
import json
import os
import sys
import time

import pytest

from loom.pipeline import Pipeline, catalog_dir, parse_definition
from loom.pipeline.operators.command_once import plain_argv
from loom.store.message import new_message


class Run:
    """A pipe run in memory, with its stderr captured."""

    def __init__(self, definition: str) -> None:
        self.stderr = io.StringIO()
        self.pipe = Pipeline(
            parse_definition(definition, name="t"), instance="t", stderr=self.stderr
        )

    def __call__(self, body: str) -> list[str]:
        return [m.body for m in self.pipe.push(new_message("cli", body))]

    def close(self) -> None:
        self.pipe.close()


@pytest.fixture
def make() -> object:
    runs: list[Run] = []

    def factory(definition: str) -> Run:
        runs.append(Run(definition))
        return runs[-1]

    yield factory
    for r in runs:
        r.close()


def test_exit_0_forwards_one_message_per_stdout_line(make) -> None:
    run = make('- command: "tr a-z A-Z; echo; echo second"')
    assert run("hello") == ["HELLO", "second"]


def test_the_body_arrives_on_stdin_ending_in_a_newline(make) -> None:
    assert make('- command: "wc -l"')("one line")[0].strip() == "1"


def test_the_long_form_and_an_argument_list(make) -> None:
    run = make(
        f"- operator: command\n  cmd: [{sys.executable}, -c, 'print(input()[::-1])']\n  timeout: 5s"
    )
    assert run("abc") == ["cba"]


def test_the_message_envelope_is_in_the_environment(make) -> None:
    assert make('- command: "echo $LOOM_MSG_FROM $LOOM_PIPE"')("x") == ["cli t"]


def test_the_catalog_operators_are_on_the_path_after_the_users(make) -> None:
    [path] = make("- command: 'echo \"$PATH\"'")("x")
    assert path.split(os.pathsep)[-1] == str(catalog_dir("operators"))
    assert path.startswith(os.environ["PATH"])


def test_printing_nothing_forwards_nothing(make) -> None:
    run = make('- command: "cat >/dev/null"')
    assert run("x") == []
    assert run.pipe.drops == {}


def test_a_non_zero_exit_drops_and_logs_stderr(make) -> None:
    run = make('- command: "echo out; echo oops >&2; exit 1"')
    assert run("x") == []
    assert run.pipe.drops == {"1:command": 1}
    assert "oops" in run.stderr.getvalue()
    assert "exit status 1" in run.stderr.getvalue()


@pytest.mark.parametrize(
    "cmd",
    ["kill -9 $$", f"{sys.executable} -c 'import os; os.kill(os.getpid(), 9)'"],
)
def test_a_crash_forwards_the_message_unchanged(make, cmd: str) -> None:
    run = make(f'- command: "{cmd}"')
    assert run("keep me") == ["keep me"]
    assert "killed by signal 9" in run.stderr.getvalue()


def test_a_hang_past_the_timeout_forwards_the_message_unchanged(make) -> None:
    run = make('- command: "sleep 20"\n  timeout: 200ms')
    started = time.monotonic()
    assert run("slow") == ["slow"]
    assert time.monotonic() - started < 5
    assert "timed out" in run.stderr.getvalue()


def test_invalid_utf8_output_is_replaced_and_logged(make) -> None:
    run = make("- command: \"printf '\\\\377ok\\\\n'\"")
    assert run("x") == ["\ufffdok"]
    assert "not UTF-8" in run.stderr.getvalue()


def test_a_missing_program_drops(make) -> None:
    run = make("- command: [/nonexistent/program]")
    assert run("x") == []
    assert "failed to start" in run.stderr.getvalue()


# -- stream: true ------------------------------------------------------------------
ANSWER = (
    "import os, sys, time\n"
    "for line in sys.stdin:\n"
    "    line = line.rstrip('\\n')\n"
    "    if line == 'die': sys.exit(3)\n"
    "    if line == 'hang': time.sleep(30)\n"
    "    if line == 'skip': print(flush=True); continue\n"
    "    print(os.getpid(), line, flush=True)\n"
)


@pytest.fixture
def streamer(make, tmp_path):
    script = tmp_path / "answer.py"
    script.write_text(ANSWER)
    return make(f"- command: [{sys.executable}, {script}]\n  stream: true\n  timeout: 500ms")


def split(answer: str) -> tuple[str, str]:
    pid, _, rest = answer.partition(" ")
    return pid, rest


def test_one_process_answers_every_message(streamer) -> None:
    answers = [split(streamer(b)[0]) for b in ("a", "b", "c")]
    assert [a[1] for a in answers] == ["a", "b", "c"]
    assert len({a[0] for a in answers}) == 1


def test_bodies_are_framed_as_one_line(streamer) -> None:
    assert split(streamer('{\n  "a": [1,\n 2]\n}')[0])[1] == '{"a":[1,2]}'
    assert json.loads(split(streamer("two\nlines")[0])[1]) == "two\nlines"


def test_an_empty_answer_drops(streamer) -> None:
    assert streamer("skip") == []
    assert streamer.pipe.drops == {"1:command": 1}


def test_a_dead_process_is_restarted_and_its_message_forwarded(streamer) -> None:
    first, _ = split(streamer("a")[0])
    assert streamer("die") == ["die"]
    assert "crashed" in streamer.stderr.getvalue()
    second, body = split(streamer("b")[0])
    assert body == "b" and second != first


def test_a_hung_process_is_restarted_after_the_timeout(streamer) -> None:
    first, _ = split(streamer("a")[0])
    assert streamer("hang") == ["hang"]
    assert "timed out" in streamer.stderr.getvalue()
    second, body = split(streamer("b")[0])
    assert body == "b" and second != first


# -- one process per message: direct start and the exchange --------------------------
@pytest.mark.parametrize(
    ("cmd", "argv"),
    [
        ("cat", ["cat"]),
        ("  grep -v debug  ", ["grep", "-v", "debug"]),
        (
            "md-sections.py --level=2 'two words' \"x,y\"",
            ["md-sections.py", "--level=2", "two words", "x,y"],
        ),
        ("./tool a:b +1 50% user@host", ["./tool", "a:b", "+1", "50%", "user@host"]),
        ("tr a-z A-Z; echo", None),
        ("echo $HOME", None),
        ("cat >/dev/null", None),
        ("ls *.txt", None),
        ("a | b", None),
        ("cmd ~/x", None),
        ("FOO=1 cmd", None),
        ("echo hi", None),
        ("exit 3", None),
        ("true", None),
        ("'unbalanced", None),
        ("say 'it\\'s'", None),
        ("cat\nwc -l", None),
        ("cat # comment", None),
        ("héllo", None),
    ],
)
def test_a_command_line_without_shell_syntax_runs_without_a_shell(
    cmd: str, argv: list[str] | None
) -> None:
    assert plain_argv(cmd) == argv


def test_the_direct_start_sees_the_environment_the_shell_would_pass(make, monkeypatch) -> None:
    monkeypatch.setenv("IFS", "x")
    monkeypatch.setenv("OPTIND", "7")
    monkeypatch.setenv("PWD", "/nonexistent")
    monkeypatch.setenv("PPID", "1")
    monkeypatch.setenv("NOT-A-NAME", "dropped by the shell")
    # `env` alone runs directly; with a redirection it needs the shell.
    direct = sorted(make("- command: env")("x"))
    shell = sorted(make("- command: env 2>/dev/null")("x"))
    # Each message has its id; bash (when it is /bin/sh) also exports two of its own.
    ignored = ("LOOM_MSG_ID=", "_=", "SHLVL=")
    assert [v for v in direct if not v.startswith(ignored)] == [
        v for v in shell if not v.startswith(ignored)
    ]


def test_a_program_that_cannot_start_directly_goes_through_the_shell(make, tmp_path) -> None:
    script = tmp_path / "no-shebang"
    script.write_text("echo from the shell\n")
    script.chmod(0o755)
    assert make(f"- command: {script}")("x") == ["from the shell"]
    run = make("- command: no-such-program-here")
    assert run("x") == []
    assert "not found" in run.stderr.getvalue()  # the shell's own message, as before


def test_big_bodies_and_outputs_do_not_block(make) -> None:
    body = "x" * 3_000_000
    assert make("- command: cat")(body) == [body]


def test_a_program_that_reads_nothing_still_succeeds(make) -> None:
    assert make("- command: 'echo done'")("y" * 1_000_000) == ["done"]


def test_closing_the_output_does_not_end_the_timeout(make) -> None:
    code = "import os, time; os.close(1); os.close(2); time.sleep(20)"
    run = make(f"- command: [{sys.executable}, -c, '{code}']\n  timeout: 300ms")
    started = time.monotonic()
    assert run("slow") == ["slow"]
    assert time.monotonic() - started < 5
    assert "timed out" in run.stderr.getvalue()


def test_stderr_written_before_a_timeout_is_logged(make) -> None:
    run = make("- command: 'echo early >&2; sleep 20'\n  timeout: 300ms")
    assert run("x") == ["x"]
    assert "early" in run.stderr.getvalue()
