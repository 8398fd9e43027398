"""`loom pipe run`: the foreground filter, end to end through the real CLI."""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, run_loom, spawn_loom, wait_for

from loom.pipeline.pipe_run import Framer, parse_envelope
from loom.store.files import MESSAGE_BODY_LIMIT
from loom.store.message import new_message

FILTER_MAP = """\
- filter: "level == 'error'"
- map: "{id: id, msg: msg}"
"""


def write_pipe(tmp_path: Path, text: str, name: str = "p") -> Path:
    path = tmp_path / f"{name}.yml"
    path.write_text(text, encoding="utf-8")
    return path


def envelopes(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines()]


class LineReader:
    """Reads stdout lines of a running process without blocking past a deadline."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.fd = proc.stdout.fileno()
        self.buffer = b""

    def line(self, timeout: float = 10.0) -> str:
        def ready() -> bool:
            if b"\n" in self.buffer:
                return True
            if select.select([self.fd], [], [], 0.05)[0]:
                chunk = os.read(self.fd, 65536)
                assert chunk, "stdout closed before a line arrived"
                self.buffer += chunk
            return b"\n" in self.buffer

        wait_for(ready, timeout, "a line on stdout")
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode()


# --- framing and output -------------------------------------------------------------


def test_each_line_is_one_message_and_results_are_bodies(tmp_path: Path) -> None:
    pipe = write_pipe(tmp_path, FILTER_MAP)
    lines = [
        '{"id": 1, "level": "error", "msg": "disk full"}',
        '{"id": 2, "level": "info", "msg": "ok"}',
        '{"id": 3, "level": "error", "msg": "héllo"}',
    ]
    r = run_loom("pipe", "run", str(pipe), input="\n".join(lines) + "\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout == '{"id":1,"msg":"disk full"}\n{"id":3,"msg":"héllo"}\n'
    assert r.stderr == ""


def test_a_last_line_without_newline_crlf_endings_and_empty_lines(tmp_path: Path) -> None:
    pipe = write_pipe(tmp_path, '- map: "@"\n')
    r = run_loom("pipe", "run", str(pipe), input=b"one\r\n\r\n\ntwo\r\nthree")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "one\ntwo\nthree\n"


def test_whole_makes_all_of_stdin_one_message_printed_verbatim(tmp_path: Path) -> None:
    pipe = write_pipe(tmp_path, '- map: "@"\n')
    text = "# Report\n\nline two\nline three\n"
    r = run_loom("pipe", "run", str(pipe), "--whole", input=text)
    assert r.returncode == 0, r.stderr
    assert r.stdout == text
    r = run_loom("pipe", "run", str(pipe), "--whole", "--envelope", input=text)
    [env] = envelopes(r.stdout)
    assert env["body"] == text


def test_plain_lines_become_stdin_messages_and_envelopes_carry_origin(tmp_path: Path) -> None:
    pipe = write_pipe(tmp_path, FILTER_MAP, name="errors-only")
    r = run_loom(
        "pipe", "run", str(pipe), "--envelope",
        input='{"id": 1, "level": "error", "msg": "a"}\n{"id": 2, "level": "error", "msg": "b"}\n',
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    first, second = envelopes(r.stdout)
    assert first["v"] == 1 and first["from"] == "errors-only"
    assert json.loads(str(first["body"])) == {"id": 1, "msg": "a"}
    # Each input got its own new id; the origin names the input's file name.
    assert first["origin"] != second["origin"]
    for env in (first, second):
        assert isinstance(env["origin"], str) and env["origin"].endswith(".msg")
        assert "/" not in env["origin"] and len(str(env["id"])) == 26
        # The input's id was made before the result's (ULIDs sort by creation).
        input_ts, input_id = env["origin"].removesuffix(".msg").split("-")
        assert input_id < str(env["id"]) and int(input_ts) <= int(str(env["ts"]))
    assert str(first["id"]) < str(second["id"])


def test_an_envelope_line_keeps_its_id_and_origin(tmp_path: Path) -> None:
    pipe = write_pipe(tmp_path, FILTER_MAP)
    upstream = new_message("agent-a", json.dumps({"id": 7, "level": "error", "msg": "x"}))
    upstream = new_message("agent-a", upstream.body, origin="1700000000000-ROOT.msg")
    r = run_loom("pipe", "run", str(pipe), "--envelope", input=upstream.to_json() + "\n")
    assert r.returncode == 0, r.stderr
    [env] = envelopes(r.stdout)
    assert env["origin"] == f"1700000000000-ROOT.msg/{upstream.filename}"
    assert env["id"] != upstream.id


def test_envelope_output_carries_route_destinations(tmp_path: Path) -> None:
    pipe = write_pipe(
        tmp_path,
        """\
- route:
    - {when: "priority == 'urgent'", to: notifier}
    - {to: [archivist, search]}
""",
    )
    r = run_loom(
        "pipe", "run", str(pipe), "--envelope",
        input='{"priority": "urgent"}\n{"priority": "low"}\n',
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert [e.get("to") for e in envelopes(r.stdout)] == [["notifier"], ["archivist", "search"]]


# --- bad input ----------------------------------------------------------------------


def test_non_json_lines_pass_through_filter_and_map_without_failing(tmp_path: Path) -> None:
    pipe = write_pipe(tmp_path, '- filter: "@ != \'skip\'"\n- map: "{text: @, id: id}"\n')
    r = run_loom("pipe", "run", str(pipe), input='plain text\nskip\n{"id": 3}\n[1, 2\n')
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        '{"text":"plain text","id":null}',
        '{"text":{"id":3},"id":3}',
        '{"text":"[1, 2","id":null}',
    ]


def test_an_operator_error_is_one_stderr_line_and_the_rest_goes_on(tmp_path: Path) -> None:
    pipe = write_pipe(tmp_path, '- map: "abs(n)"\n', name="absolute")
    r = run_loom("pipe", "run", str(pipe), input='{"n": -2}\n{"n": "two"}\n{"n": 3}\n')
    assert r.returncode == 0
    assert r.stdout == "2\n3\n"
    [error] = r.stderr.splitlines()
    assert error.startswith("loom: pipe absolute: ") and "abs" in error


def test_binary_garbage_is_decoded_with_replacement(tmp_path: Path) -> None:
    pipe = write_pipe(tmp_path, '- map: "@"\n')
    garbage = bytes(range(256)).replace(b"\n", b"") + b"\n\xff\xfe\x00tail\n"
    r = run_loom("pipe", "run", str(pipe), input=garbage)
    assert r.returncode == 0, r.stderr
    first, second = r.stdout.split("\n")[:2]
    assert "\ufffd" in first and second == "\ufffd\ufffd\x00tail"


def test_a_ten_megabyte_line_is_one_message(tmp_path: Path) -> None:
    pipe = write_pipe(tmp_path, '- filter: "id == `1`"\n- map: "length(pad)"\n')
    big = json.dumps({"id": 1, "pad": "x" * 10_000_000})
    r = run_loom("pipe", "run", str(pipe), input=f'{big}\n{{"id": 2, "pad": ""}}\n')
    assert r.returncode == 0, r.stderr
    assert r.stdout == "10000000\n"


def test_an_unreadable_envelope_is_reported_and_skipped(tmp_path: Path) -> None:
    pipe = write_pipe(tmp_path, '- map: "@"\n')
    bad = '{"v": 1, "id": "../etc", "from": "x", "ts": 1, "body": "b"}'
    r = run_loom("pipe", "run", str(pipe), input=f"before\n{bad}\nafter\n")
    assert r.returncode == 0
    assert r.stdout == "before\nafter\n"
    assert "line 2" in r.stderr and "unreadable" in r.stderr


def test_a_line_past_the_message_limit_is_reported_and_skipped(tmp_path: Path) -> None:
    pipe = write_pipe(tmp_path, '- map: "@"\n')
    huge = "x" * (MESSAGE_BODY_LIMIT + 10)
    r = run_loom("pipe", "run", str(pipe), input=f"before\n{huge}\nafter\n", timeout=60)
    assert r.returncode == 0
    assert r.stdout == "before\nafter\n"
    assert (
        r.stderr == "loom: pipe p: line 2 is longer than 32 MiB, the limit for a message; skipped\n"
    )
    r = run_loom("pipe", "run", str(pipe), "--whole", input=huge, timeout=60)
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr == "loom: stdin (--whole) is larger than 32 MiB, the limit for it.\n"


def test_framer_counts_lines_across_a_skipped_long_line() -> None:
    framer = Framer(limit=8)
    got = framer.feed(b"one\n" + b"y" * 5) + framer.feed(b"y" * 5) + framer.feed(b"yy\ntwo\nthr")
    got += framer.end()
    assert [m.body for m in got] == ["one", "two", "thr"]
    assert framer.too_long == [2]


def test_an_envelope_from_a_newer_loom_stops_with_upgrade_advice(tmp_path: Path) -> None:
    pipe = write_pipe(tmp_path, '- map: "@"\n')
    newer = '{"v": 99, "id": "A1", "from": "x", "ts": 1, "body": "b"}'
    r = run_loom("pipe", "run", str(pipe), input=f"first\n{newer}\n")
    assert r.returncode == 1
    assert "upgrade" in r.stderr


def test_an_unknown_pipe_name_is_a_usage_error_naming_where_it_looked() -> None:
    r = run_loom("pipe", "run", "no-such-pipe", input="x\n")
    assert r.returncode == 2
    assert "no-such-pipe" in r.stderr and "pipes" in r.stderr
    assert r.stdout == ""


def test_a_reader_that_goes_away_is_not_an_error(tmp_path: Path) -> None:
    pipe = write_pipe(tmp_path, '- map: "@"\n')
    lines = "".join(f"line {i}\n" for i in range(200_000))
    script = f"{' '.join(map(repr, [sys.executable, '-m', 'loom']))} pipe run {pipe} | head -n 1"
    proc = subprocess.run(
        ["sh", "-c", f'{script}; echo "rc=$?" >&2'],
        input=lines.encode(),
        capture_output=True,
        timeout=60,
    )
    assert proc.stdout == b"line 0\n"
    assert b"Traceback" not in proc.stderr and b"Broken" not in proc.stderr


def test_a_closed_stdin_is_empty_input(tmp_path: Path) -> None:
    pipe = write_pipe(tmp_path, '- map: "@"\n')
    loom = f"{sys.executable} -m loom"
    proc = subprocess.run(["sh", "-c", f"{loom} pipe run {pipe} <&-"], capture_output=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b""


def test_help_explains_framing_with_an_example() -> None:
    r = run_loom("pipe", "run", "--help")
    assert r.returncode == 0
    assert "--whole" in r.stdout and "--envelope" in r.stdout and "Example:" in r.stdout


# --- time and end of input ---------------------------------------------------------------


def test_windows_flush_at_end_of_input(tmp_path: Path) -> None:
    pipe = write_pipe(tmp_path, "- window: {size: 10, timeout: 1h}\n")
    r = run_loom("pipe", "run", str(pipe), input="a\nb\nc\n")
    assert r.returncode == 0, r.stderr
    [batch] = r.stdout.splitlines()
    assert [m["body"] for m in json.loads(batch)] == ["a", "b", "c"]


def test_results_show_up_while_stdin_stays_open(tmp_path: Path, reap: list) -> None:
    pipe = write_pipe(tmp_path, '- map: "{seen: @}"\n')
    proc = spawn_loom("pipe", "run", str(pipe), stdin=subprocess.PIPE)
    reap.append(proc)
    assert proc.stdin is not None
    out = LineReader(proc)
    proc.stdin.write(b"first\n")
    proc.stdin.flush()
    assert out.line() == '{"seen":"first"}'
    proc.stdin.write(b"second\n")
    proc.stdin.flush()
    assert out.line() == '{"seen":"second"}'
    proc.stdin.close()
    assert proc.wait(timeout=10) == 0


def test_a_window_times_out_while_stdin_is_idle(tmp_path: Path, reap: list) -> None:
    pipe = write_pipe(tmp_path, "- window: {size: 100, timeout: 200ms}\n")
    proc = spawn_loom("pipe", "run", str(pipe), stdin=subprocess.PIPE)
    reap.append(proc)
    assert proc.stdin is not None
    out = LineReader(proc)
    proc.stdin.write(b"a\nb\n")
    proc.stdin.flush()
    batch = json.loads(out.line())
    assert [m["body"] for m in batch] == ["a", "b"]
    assert proc.poll() is None  # still reading stdin
    proc.stdin.close()
    assert proc.wait(timeout=10) == 0


def test_throttled_messages_all_come_out_in_order_after_end_of_input(tmp_path: Path) -> None:
    pipe = write_pipe(tmp_path, "- throttle: {max: 2, per: 100ms}\n")
    r = run_loom("pipe", "run", str(pipe), input="".join(f"{i}\n" for i in range(5)))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["0", "1", "2", "3", "4"]


# --- shell chains ---------------------------------------------------------------------


def test_agent_pipe_agent_chain_keeps_origin_tracking(tmp_path: Path, loom_home: Path) -> None:
    pipe = write_pipe(tmp_path, "- filter: \"@ != ''\"\n", name="pass")
    loom = f"{sys.executable} -m loom"
    script = (
        f"echo hi | {loom} agent start a --model echo --stdin --envelope"
        f" | {loom} pipe run {pipe} --envelope"
        f" | {loom} agent start b --model echo --stdin"
    )
    proc = subprocess.run(["sh", "-c", script], capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode().strip() == "hi"
    a_in = sorted((loom_home / "agents/a/inbox/.processed").iterdir())
    a_out = sorted((loom_home / "agents/a/outbox").iterdir())
    b_in = sorted((loom_home / "agents/b/inbox/.processed").iterdir())
    b_out = sorted((loom_home / "agents/b/outbox").iterdir())
    assert len(a_in) == len(a_out) == len(b_in) == len(b_out) == 1
    reply = json.loads(b_out[0].read_text())
    # root (a's input) / a's reply / the pipe's result: the full lineage survived the shell.
    assert reply["origin"] == f"{a_in[0].name}/{a_out[0].name}/{b_in[0].name}"
    assert json.loads(b_in[0].read_text())["from"] == "pass"


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq not installed")
def test_output_feeds_jq(tmp_path: Path) -> None:
    pipe = write_pipe(tmp_path, FILTER_MAP)
    line = '{"id": 1, "level": "error", "msg": "m"}'
    loom = f"{sys.executable} -m loom"
    proc = subprocess.run(
        ["sh", "-c", f"{loom} pipe run {pipe} --envelope | jq -r .body"],
        input=f"{line}\n".encode(),
        capture_output=True,
        timeout=60,
    )
    assert proc.stdout.decode() == '{"id":1,"msg":"m"}\n'


# --- the framer, in-process -------------------------------------------------------------


def test_framer_joins_lines_split_across_reads_and_counts_lines() -> None:
    framer = Framer()
    assert framer.feed(b"ab") == []
    assert [m.body for m in framer.feed(b"c\nde")] == ["abc"]
    assert [m.body for m in framer.feed(b"\xc3")] == []
    assert [m.body for m in framer.feed(b"\xa9\n")] == ["deé"]
    assert framer.end() == [] and framer.lines_read == 2


def test_framer_whole_mode_takes_a_single_envelope_as_that_message() -> None:
    upstream = new_message("a", "multi\nline", origin="1-X.msg")
    framer = Framer(whole=True)
    framer.feed(upstream.to_bytes()[:10])
    framer.feed(upstream.to_bytes()[10:] + b"\n")
    [message] = framer.end()
    assert message == upstream


def test_parse_envelope_tells_text_json_and_envelopes_apart() -> None:
    assert parse_envelope('{"body": "x"}') is None
    assert parse_envelope("not json") is None
    message = new_message("a", "b")
    assert parse_envelope(message.to_json()) == message


def test_the_cli_module_does_not_import_the_engine() -> None:
    code = "import sys, loom.cli; print(sorted(m for m in sys.modules if m.split('.')[0] in ('jmespath', 'yaml', 'httpx', 'loom')))"  # noqa: E501
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    loaded = out.stdout
    assert "jmespath" not in loaded and "'yaml'" not in loaded
    assert "loom.pipeline" not in loaded and "loom.pipeline.pipe_run" not in loaded
    assert "loom.pipeline.pipetest" not in loaded


def test_framer_frames_alike_with_and_without_envelope_lines_in_the_chunk() -> None:
    # A chunk without any envelope takes the batch path; one with an envelope line takes
    # the per-line path: plain lines come out the same either way.
    text = b'one\r\n\r\n{"a": 1}\n\ntwo\r\nlast\r'
    envelope = new_message("up", "kept").to_bytes()
    plain = Framer().feed(text + b"\n")
    mixed = Framer().feed(envelope + b"\n" + text + b"\n")
    assert [m.body for m in plain] == ["one", '{"a": 1}', "two", "last"]
    assert [m.body for m in mixed] == ["kept", *[m.body for m in plain]]
    assert all(m.sender == "stdin" and m.origin is None and m.extra == {} for m in plain)
    names = [m.filename for m in plain + mixed[1:]]
    assert names == sorted(names) and len(set(names)) == len(names)


SURROGATE_LINE = '{"v": 1, "id": "s1", "from": "x", "ts": 1, "body": "\\ud800 hi"}\n'


@pytest.mark.parametrize(
    "operator", ['- map: "@"', "- command: cat", "- command: {cmd: cat, stream: true}"]
)
def test_a_lone_surrogate_passes_through_as_its_escape(tmp_path: Path, operator: str) -> None:
    # JSON can escape a lone surrogate, UTF-8 cannot hold one: loom writes the escape
    # (to a command's stdin and to its own stdout), and the rest of the input goes on.
    pipe = write_pipe(tmp_path, operator + "\n")
    result = run_loom("pipe", "run", str(pipe), input=SURROGATE_LINE + "next\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["\\ud800 hi", "next"]
    assert "Traceback" not in result.stderr
