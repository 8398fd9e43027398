"""`loom send --lines/--ndjson` (many messages from one process) and `--wait` (the reply
printed, as a function call would return it), through the real CLI."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_loom, spawn_loom, wait_for
from llm_server import LLMServer, Reply, Slow, Status

from loom.store.home import pid_is_loom
from loom.store.message import new_message

SECRET = "sk-test-bulk-0a1b2c"


def msgs(directory: Path) -> list[str]:
    try:
        return sorted(n for n in os.listdir(directory) if n.endswith(".msg"))
    except FileNotFoundError:
        return []


def bodies(directory: Path) -> dict[str, str]:
    """Message id -> body of every message in `directory`."""
    found = {}
    for name in msgs(directory):
        d = json.loads((directory / name).read_text(encoding="utf-8"))
        found[d["id"]] = d["body"]
    return found


@pytest.fixture
def stop_all(loom_home: Path) -> Iterator[None]:
    """The supervisor and agents a test started in the background end with it."""
    yield
    try:
        sup = int((loom_home / "supervisor.pid").read_text())
    except (FileNotFoundError, ValueError):
        sup = 0
    if sup and pid_is_loom(sup):
        os.kill(sup, signal.SIGKILL)
    for pidfile in loom_home.glob("*/*/pid"):
        raw = pidfile.read_text().strip()
        if raw and pid_is_loom(int(raw)):
            os.kill(int(raw), signal.SIGKILL)


def start(name: str, model: str = "echo", env: dict[str, str] | None = None) -> None:
    r = run_loom("agent", "start", name, "--model", model, "-d", env=env)
    assert r.returncode == 0, r.stderr


def model_env(server: LLMServer) -> dict[str, str]:
    return {**server.env(), "OPENAI_API_KEY": SECRET, "LOOM_HTTP_TIMEOUT": "5"}


# ---------------------------------------------------------------- bulk input


def test_two_thousand_lines_are_sent_by_one_process_each_once_in_order(loom_home: Path) -> None:
    lines = [f'line {i}: "quoted" \u00e9\u6f22\u5b57 \U0001f600\tafter a tab' for i in range(2000)]
    r = run_loom(
        "send", "a", "--create", "--lines", "--print-ids", input="\n".join(lines) + "\n", timeout=60
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # no progress line when stderr is not a terminal
    ids = r.stdout.splitlines()
    assert len(ids) == 2000 == len(set(ids))
    inbox = loom_home / "agents/a/inbox"
    sent = bodies(inbox)
    assert sorted(sent) == sorted(ids)
    assert [sent[i] for i in ids] == lines  # ids in input order, bodies exact
    # Filename order (the order an agent answers in) is input order too.
    assert [n.split("-", 1)[1][:-4] for n in msgs(inbox)] == ids
    assert not [n for n in os.listdir(inbox) if n.startswith(".tmp-")]


def test_lines_with_fsync_on_are_all_delivered(loom_home: Path) -> None:
    # The suite runs with LOOM_FSYNC=0; this is the path users get by default.
    r = run_loom(
        "send",
        "a",
        "--create",
        "--lines",
        input="".join(f"{i}\n" for i in range(600)),
        env={"LOOM_FSYNC": "1"},
    )
    assert r.returncode == 0, r.stderr
    inbox = loom_home / "agents/a/inbox"
    assert sorted(bodies(inbox).values(), key=int) == [str(i) for i in range(600)]
    assert not [n for n in os.listdir(inbox) if n.startswith(".tmp-")]


def test_progress_goes_to_stderr_only_on_a_terminal(loom_home: Path) -> None:
    main, child = pty.openpty()
    p = spawn_loom("send", "a", "--create", "--lines", "--print-ids", stdin=-1, stderr=child)
    os.close(child)
    out, _ = p.communicate("".join(f"{i}\n" for i in range(3000)).encode(), timeout=60)
    assert p.returncode == 0
    shown = b""
    with contextlib.suppress(OSError):  # EIO once the terminal's last writer is gone
        while chunk := os.read(main, 65536):
            shown += chunk
    os.close(main)
    assert b"\r\x1b[Ksent 256/3000" in shown and shown.endswith(b"\r\x1b[K")
    assert len(out.decode().splitlines()) == 3000  # stdout: the ids and nothing else


def test_lines_skips_empty_and_blank_lines_and_drops_a_cr(loom_home: Path) -> None:
    r = run_loom("send", "a", "--create", "--lines", input="one\r\n\n   \ntwo\n\nthree")
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""  # nothing on stdout without --print-ids
    assert sorted(bodies(loom_home / "agents/a/inbox").values()) == ["one", "three", "two"]


def test_lines_from_a_file(loom_home: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("x\ny\n")
    r = run_loom("send", "a", "--create", "--lines", "--file", str(source), "--from", "cron")
    assert r.returncode == 0, r.stderr
    inbox = loom_home / "agents/a/inbox"
    senders = {json.loads((inbox / n).read_text())["from"] for n in msgs(inbox)}
    assert sorted(bodies(inbox).values()) == ["x", "y"] and senders == {"cron"}


def test_no_lines_sends_nothing_and_says_so(loom_home: Path) -> None:
    r = run_loom("send", "a", "--create", "--lines", input="\n\n")
    assert r.returncode == 0
    assert "nothing sent" in r.stderr
    assert msgs(loom_home / "agents/a/inbox") == []


def test_ndjson_keeps_an_envelope_and_sends_other_values_as_compact_json(
    loom_home: Path,
) -> None:
    env = new_message("upstream", "from a pipe").reply("b", "the reply", parent_filename=None)
    lines = [env.to_json(), '{"a": 1, "b": [1, 2]}', '"just a string"', "42", ""]
    r = run_loom("send", "a", "--create", "--ndjson", "--print-ids", input="\n".join(lines))
    assert r.returncode == 0, r.stderr
    ids = r.stdout.splitlines()
    assert len(ids) == 4 and ids[0] == env.id
    inbox = loom_home / "agents/a/inbox"
    kept = json.loads((inbox / env.filename).read_text())
    assert kept == env.to_dict()  # id, from, ts and origin as they were
    sent = bodies(inbox)
    assert [sent[i] for i in ids[1:]] == ['{"a":1,"b":[1,2]}', '"just a string"', "42"]


@pytest.mark.parametrize(
    ("data", "flags", "said"),
    [
        (b"good\n\xff\xfebad\nalso good\n", ("--lines",), "line 2 is not valid UTF-8"),
        (b"good\nnul\x00here\n", ("--lines",), "line 2 holds a NUL byte"),
        (b'{"a": 1}\n\n{"a": \n', ("--ndjson",), "line 3 is not JSON"),
        (b'{"a": 1}\nNaN\n', ("--ndjson",), "line 2 is not JSON"),
        (
            b'{"v": 1, "id": "bad id!", "from": "x", "ts": 1, "body": "b"}\n',
            ("--ndjson",),
            "line 1 is a message envelope that does not validate",
        ),
    ],
)
def test_a_bad_line_is_named_and_nothing_is_sent(
    loom_home: Path, data: bytes, flags: tuple[str, ...], said: str
) -> None:
    r = run_loom("send", "a", "--create", *flags, input=data)
    assert r.returncode == 2
    [line] = r.stderr.splitlines()
    assert line.startswith("loom: stdin ") and said in line and line.endswith("nothing sent")
    assert r.stdout == ""
    assert msgs(loom_home / "agents/a/inbox") == []


def test_a_line_over_the_body_limit_is_named_and_nothing_is_sent(loom_home: Path) -> None:
    from loom.store.files import MESSAGE_BODY_LIMIT

    data = b"first\n" + b"x" * (MESSAGE_BODY_LIMIT + 1) + b"\nlast\n"
    r = run_loom("send", "a", "--create", "--lines", input=data, timeout=120)
    assert r.returncode == 2
    assert "line 2 is 33554433 bytes long, over 32 MiB" in r.stderr
    assert msgs(loom_home / "agents/a/inbox") == []


def test_every_bad_line_is_listed_with_a_total(loom_home: Path) -> None:
    data = b"ok\n" + b"\xff\n" * 25 + b"ok\n"
    r = run_loom("send", "a", "--create", "--lines", input=data)
    assert r.returncode == 2
    lines = r.stderr.splitlines()
    assert lines[0] == "loom: stdin line 2 is not valid UTF-8 (byte 1 is 0xff)"
    assert lines[19].startswith("loom: stdin line 21 ")
    assert lines[20] == "loom: ... and 5 more bad lines"
    assert lines[21] == "loom: 25 of 27 lines are bad; nothing sent"
    assert msgs(loom_home / "agents/a/inbox") == []


def test_the_same_envelope_twice_is_a_bad_line(loom_home: Path) -> None:
    env = new_message("x", "once").to_json()
    r = run_loom("send", "a", "--create", "--ndjson", input=f"{env}\n{env}\n")
    assert r.returncode == 2
    assert "line 2 is the message of line 1 again" in r.stderr
    assert msgs(loom_home / "agents/a/inbox") == []


def test_an_envelope_sent_and_answered_before_is_not_sent_again(
    loom_home: Path, stop_all: None
) -> None:
    """Re-sending an input (after a partial send, say) delivers each envelope once: one
    already answered is skipped with a line, and --wait still prints its reply."""
    start("a")
    first, second = new_message("x", "first"), new_message("x", "second")
    r = run_loom("send", "a", "--ndjson", "--wait", input=first.to_json() + "\n", timeout=30)
    assert (r.returncode, r.stdout) == (0, "first\n"), r.stderr
    both = f"{first.to_json()}\n{second.to_json()}\n"
    r = run_loom("send", "a", "--ndjson", "--wait", "--ordered", input=both, timeout=30)
    assert (r.returncode, r.stdout) == (0, "first\nsecond\n"), r.stderr
    assert r.stderr == (
        f"loom: stdin line 1: {first.filename} is in a's queue already; not sent again\n"
    )
    processed = loom_home / "agents/a/inbox/.processed"
    wait_for(lambda: len(msgs(processed)) == 2, 10, "both answered")
    outbox = [
        json.loads((loom_home / "agents/a/outbox" / n).read_text())
        for n in msgs(loom_home / "agents/a/outbox")
    ]
    assert sorted(m["body"] for m in outbox) == ["first", "second"]  # none answered twice
    r = run_loom("send", "a", "--ndjson", "--print-ids", input=both)
    assert r.returncode == 0 and r.stdout == f"{first.id}\n{second.id}\n"
    assert r.stderr.count("not sent again") == 2
    assert msgs(loom_home / "agents/a/inbox") == []


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("a", "hi", "--lines"), "give no MESSAGE"),
        (("a", "--lines", "--ndjson"), "not both"),
        (("a", "hi", "--timeout", "5s"), "--timeout goes with --wait"),
        (("a", "hi", "--wait", "--ordered"), "--ordered goes with --lines"),
        (("a", "--lines", "--wait", "--print-ids"), "--print-ids and --wait"),
        (("a", "hi", "--wait", "--timeout", "30"), "--timeout must be a duration such as"),
        (("../x", "--lines"), "name"),
    ],
)
def test_options_that_do_not_go_together_are_usage_errors(
    loom_home: Path, args: tuple[str, ...], said: str
) -> None:
    r = run_loom("send", *args, input="line\n")
    assert r.returncode == 2, r.stderr
    assert said in r.stderr and len(r.stderr.splitlines()) == 1


# ---------------------------------------------------------------- --wait


def test_wait_prints_the_reply_of_a_detached_agent(loom_home: Path, stop_all: None) -> None:
    start("a")
    r = run_loom("send", "a", "hello, function", "--wait", timeout=30)
    assert (r.returncode, r.stdout, r.stderr) == (0, "hello, function\n", "")
    r = run_loom("send", "a", "as an envelope", "--wait", "--envelope", timeout=30)
    assert r.returncode == 0, r.stderr
    reply = json.loads(r.stdout)
    [sent] = [n for n in msgs(loom_home / "agents/a/inbox/.processed") if n in reply["origin"]]
    assert reply["body"] == "as an envelope" and reply["origin"] == sent


def test_wait_on_a_failure_reply_exits_1_with_its_body_on_stderr(
    loom_home: Path, stop_all: None, server: LLMServer
) -> None:
    server.script(Status(401, "bad key"))
    env = model_env(server)
    start("f", "openai/gpt-test", env=env)
    r = run_loom("send", "f", "hello", "--wait", env=env, timeout=30)
    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr.strip() and SECRET not in r.stderr


def test_wait_timeout_leaves_the_message_queued(loom_home: Path) -> None:
    r = run_loom("send", "idle", "--create", "anyone?", "--wait", "--timeout", "1s", timeout=30)
    assert r.returncode == 1
    assert "no reply within 1s" in r.stderr and "still queued" in r.stderr
    [queued] = msgs(loom_home / "agents/idle/inbox")
    assert queued in r.stderr
    assert json.loads((loom_home / "agents/idle/inbox" / queued).read_text())["body"] == "anyone?"


def test_ctrl_c_while_waiting_exits_130_and_leaves_the_message_queued(loom_home: Path) -> None:
    p = spawn_loom("send", "idle", "--create", "still there?", "--wait")
    inbox = loom_home / "agents/idle/inbox"
    wait_for(lambda: msgs(inbox), what="the message")
    # Whether the signal comes before the wait begins or during it, the message stays.
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 130
    assert b"stopped waiting" in err and b"still queued" in err
    assert len(msgs(inbox)) == 1


def test_lines_wait_prints_every_reply_and_fails_if_one_fails(
    loom_home: Path, stop_all: None, server: LLMServer
) -> None:
    server.script(Reply("first"), Status(401, "refused"), Slow(0.5, "third"))
    env = model_env(server)
    start("f", "openai/gpt-test", env=env)
    r = run_loom("send", "f", "--lines", "--wait", input="1\n2\n3\n", env=env, timeout=60)
    assert r.returncode == 1
    assert sorted(r.stdout.splitlines()) == ["first", "third"]
    assert "loom: line 2: " in r.stderr


def test_lines_wait_in_completion_order_or_input_order(loom_home: Path, stop_all: None) -> None:
    # The agent answers in filename order, so an envelope stamped later than the line
    # after it is answered second although it is the first line.
    late = new_message("x", "sent first, answered last")
    late = json.loads(late.to_json())
    late["ts"] += 3_600_000
    inbox = loom_home / "agents/a/inbox"
    outputs = {}
    for order in ((), ("--ordered",)):
        source = loom_home.parent / "in.ndjson"
        source.write_text(json.dumps(late) + '\n"answered first"\n')
        p = spawn_loom("send", "a", "--create", "--ndjson", "--file", str(source), "--wait", *order)
        wait_for(lambda: len(msgs(inbox)) == 2, what="both messages queued")
        start("a")
        out, err = p.communicate(timeout=30)
        assert p.returncode == 0, err
        outputs[order] = out.decode().splitlines()
        assert run_loom("agent", "stop", "a").returncode == 0
        wait_for(lambda: not msgs(inbox), what="an empty inbox")
        # A new envelope for the second round (the first one was answered).
        late["id"] = new_message("x", "").id
    assert outputs[()] == ['"answered first"', "sent first, answered last"]
    assert outputs[("--ordered",)] == ["sent first, answered last", '"answered first"']


def test_lines_wait_timeout_names_the_lines_still_queued(loom_home: Path) -> None:
    r = run_loom(
        "send",
        "idle",
        "--create",
        "--lines",
        "--wait",
        "--timeout",
        "500ms",
        input="a\n\nb\n",
        timeout=30,
    )
    assert r.returncode == 1
    assert "no reply within 0.5s to 2 of 2 messages (input lines 1, 3)" in r.stderr
    assert "still queued" in r.stderr
    assert len(msgs(loom_home / "agents/idle/inbox")) == 2
