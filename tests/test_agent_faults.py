"""The runner against a real HTTP server that fails in every way a provider can (SPEC 5)."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import loom_cmd, run_loom, spawn_loom, wait_for
from llm_server import (
    Drop,
    EchoAuth,
    Hang,
    KeepAlive,
    LLMServer,
    Malformed,
    ModelNotFound,
    Reply,
    Status,
)

SECRET = "sk-test-9f8e7d6c5b4a"


def openai_env(server: LLMServer) -> dict[str, str]:
    return {**server.env(), "OPENAI_API_KEY": SECRET, "LOOM_HTTP_TIMEOUT": "2"}


def msgs(directory: Path) -> list[str]:
    try:
        return sorted(n for n in os.listdir(directory) if n.endswith(".msg"))
    except FileNotFoundError:
        return []


def only_json(directory: Path) -> dict:
    [name] = msgs(directory)
    return json.loads((directory / name).read_text())


def ask(server: LLMServer, *extra: str, body: str = "hello") -> subprocess.CompletedProcess[str]:
    return run_loom(
        "agent",
        "start",
        "a",
        "--model",
        "openai/gpt-test",
        "--stdin",
        *extra,
        input=body,
        env=openai_env(server),
        timeout=30,
    )


def test_429_twice_then_success_is_retried_honouring_retry_after(
    server: LLMServer, loom_home: Path
) -> None:
    server.script(Status(429, retry_after=0), Status(429, retry_after=0), Reply("finally"))
    r = ask(server)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "finally\n"
    assert len(server.requests) == 3
    log = "".join(p.read_text() for p in (loom_home / "agents/a/logs").iterdir())
    replied = [json.loads(ln) for ln in log.splitlines() if '"replied"' in ln]
    assert replied[0]["attempts"] == 3


def test_500_forever_fails_fast_with_the_failure_on_disk(
    server: LLMServer, loom_home: Path
) -> None:
    server.script(*[Status(500)] * 4)
    r = ask(server)
    assert r.returncode == 1
    assert "500" in r.stderr
    a = loom_home / "agents/a"
    reply = only_json(a / "outbox")
    assert reply["error"] is True and reply["origin"] == msgs(a / "inbox/.failed")[0]
    record = json.loads(next((a / "inbox/.failed").glob("*.error.json")).read_text())
    assert record["attempts"] == 4 and record["error_type"] == "server_error"
    assert len(server.requests) == 4
    assert (a / "status").read_text().strip() == "stopped"


def test_401_is_not_retried_and_the_key_never_leaks(server: LLMServer, loom_home: Path) -> None:
    server.script(EchoAuth(401))
    r = ask(server)
    assert r.returncode == 1
    assert len(server.requests) == 1
    assert SECRET in json.dumps(server.requests[0].headers)  # the server did see it ...
    assert SECRET not in r.stderr + r.stdout  # ... but it is in no text we print
    for path in loom_home.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    record = json.loads(next((loom_home / "agents/a/inbox/.failed").glob("*.json")).read_text())
    assert record["error_type"] == "auth"


def test_missing_key_is_named_before_anything_is_claimed(
    server: LLMServer, loom_home: Path
) -> None:
    r = run_loom(
        "agent",
        "start",
        "a",
        "--model",
        "anthropic/claude-x",
        "--stdin",
        input="hi",
        env=server.env(),
    )
    assert r.returncode == 2
    assert "ANTHROPIC_API_KEY" in r.stderr
    assert not (loom_home / "agents/a/inbox").exists() or msgs(loom_home / "agents/a/inbox") == []
    assert server.requests == []


def test_ollama_model_not_found_is_actionable_and_not_retried(
    server: LLMServer, loom_home: Path
) -> None:
    server.script(ModelNotFound())
    r = run_loom(
        "agent",
        "start",
        "a",
        "--model",
        "ollama/qwen2.5:3b",
        "--stdin",
        input="hi",
        env=server.env(),
    )
    assert r.returncode == 1
    assert "Model 'qwen2.5:3b' is not available in Ollama. Run: ollama pull qwen2.5:3b" in r.stderr
    assert len(server.requests) == 1
    record = json.loads(next((loom_home / "agents/a/inbox/.failed").glob("*.json")).read_text())
    assert record["error_type"] == "model_not_found"


def test_a_timeout_is_retried_then_reported(server: LLMServer, loom_home: Path) -> None:
    server.script(Hang(5), Reply("after the timeout"))
    r = run_loom(
        "agent",
        "start",
        "a",
        "--model",
        "openai/gpt-test",
        "--stdin",
        input="hi",
        env={**openai_env(server), "LOOM_HTTP_TIMEOUT": "0.3"},
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == "after the timeout\n"
    assert "timeout" in "".join(p.read_text() for p in (loom_home / "agents/a/logs").iterdir())


@pytest.mark.parametrize("model", ["openai/gpt-test", "anthropic/claude-x", "ollama/qwen3"])
def test_a_stream_of_keep_alives_only_times_out_and_is_retried(
    server: LLMServer, loom_home: Path, model: str
) -> None:
    # Comments, pings or empty lines every 0.1 s, never a word: each attempt must give up
    # after LOOM_HTTP_TIMEOUT, not wait for the server.
    server.script(*[KeepAlive(interval=0.1, seconds=20)] * 2, Reply("at last"))
    keys = {"ANTHROPIC_API_KEY": SECRET}
    r = run_loom(
        "agent",
        "start",
        "a",
        "--model",
        model,
        "--stdin",
        input="hi",
        env={**openai_env(server), **keys, "LOOM_HTTP_TIMEOUT": "0.5"},
        timeout=15,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == "at last\n"
    assert len(server.requests) == 3
    log = "".join(p.read_text() for p in (loom_home / "agents/a/logs").iterdir())
    assert "no part of the answer for 0.5 s" in log


@pytest.mark.parametrize(
    "model, variable",
    [
        ("openai/gpt-test", "OPENAI_API_KEY"),
        ("openrouter/vendor/model", "OPENROUTER_API_KEY"),
        ("anthropic/claude-x", "ANTHROPIC_API_KEY"),
    ],
)
def test_a_key_across_the_excerpt_cut_is_written_nowhere(
    server: LLMServer, loom_home: Path, model: str, variable: str
) -> None:
    # The excerpt keeps 299 characters; the key starts at 285, so a cut leaves 14 of it.
    key = "sk-LEAKCHECK-0123456789abcdef"
    server.script(EchoAuth(401, key_at=285))
    r = run_loom(
        "agent",
        "start",
        "a",
        "--model",
        model,
        "--stdin",
        input="hi",
        env={**server.env(), variable: key, "LOOM_HTTP_TIMEOUT": "2"},
        timeout=30,
    )
    assert r.returncode == 1
    assert "HTTP 401" in r.stderr and "[redacted]" in r.stderr
    assert key[:8] not in r.stderr + r.stdout
    written = [p for p in loom_home.rglob("*") if p.is_file()]
    assert any(p.name.endswith(".error.json") for p in written)
    for path in written:
        assert key[:8].encode() not in path.read_bytes(), path


def test_a_stream_dropped_midway_is_retried_without_repeating_stdout(
    server: LLMServer, loom_home: Path
) -> None:
    text = "one two three four five six"
    server.script(Drop(after=3, text=text), Reply(text))
    r = ask(server)
    assert r.returncode == 0, r.stderr
    assert r.stdout == text + "\n"
    assert only_json(loom_home / "agents/a/outbox")["body"] == text


def test_malformed_events_fail_the_message_without_retry(
    server: LLMServer, loom_home: Path
) -> None:
    server.script(Malformed(after=1))
    r = ask(server)
    assert r.returncode == 1
    assert len(server.requests) == 1
    assert only_json(loom_home / "agents/a/outbox")["error"] is True


def serve_openai(server: LLMServer, reap: list) -> subprocess.Popen[bytes]:
    """Agent `a` serving its inbox in the foreground against the fake server."""
    p = spawn_loom("agent", "start", "a", "--model", "openai/gpt-test", env=openai_env(server))
    reap.append(p)
    return p


def stuck_in_a_call(
    server: LLMServer, loom_home: Path, reap: list, body: str
) -> subprocess.Popen[bytes]:
    """A serving runner whose model call for `body` hangs on the server."""
    server.script(Hang(30))
    p = serve_openai(server, reap)
    wait_for(lambda: (loom_home / "agents/a/status").exists(), what="runner start")
    run_loom("send", "a", body)
    wait_for(lambda: len(server.requests) == 1, what="the model call")
    return p


def test_sigkill_mid_message_then_restart_answers_exactly_once(
    server: LLMServer, loom_home: Path, reap: list
) -> None:
    p = stuck_in_a_call(server, loom_home, reap, "do not lose me")
    a = loom_home / "agents/a"
    assert len(msgs(a / "inbox/.in-progress")) == 1
    p.kill()
    p.wait()
    serve_openai(server, reap)
    wait_for(lambda: len(msgs(a / "outbox")) == 1, what="the reply after restart")
    wait_for(lambda: len(msgs(a / "inbox/.processed")) == 1, what="the ack")
    assert only_json(a / "outbox")["body"] == "echo: do not lose me"
    assert msgs(a / "inbox/.in-progress") == [] and msgs(a / "inbox") == []


def test_crash_after_the_reply_but_before_the_ack_is_not_answered_twice(
    server: LLMServer, loom_home: Path, reap: list
) -> None:
    from loom.store.message import new_message
    from loom.store.queue import Queue

    a = loom_home / "agents/a"
    q = Queue(a / "inbox", a / "outbox").ensure()
    msg = new_message("cli", "already answered")
    q.send(msg)
    q.claim(msg.filename)
    q.emit(msg.reply("a", "the answer"))
    serve_openai(server, reap)
    wait_for(lambda: msgs(a / "inbox/.processed") == [msg.filename], what="recovery ack")
    assert len(msgs(a / "outbox")) == 1
    assert server.requests == []


def test_sigterm_during_a_call_puts_the_message_back_and_exits_cleanly(
    server: LLMServer, loom_home: Path, reap: list
) -> None:
    p = stuck_in_a_call(server, loom_home, reap, "interrupted")
    a = loom_home / "agents/a"
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=5) == 0
    assert len(msgs(a / "inbox")) == 1
    assert msgs(a / "inbox/.in-progress") == [] and msgs(a / "outbox") == []
    assert (a / "status").read_text().strip() == "stopped"
    assert (a / "pid").read_text().strip() == ""


def test_stdin_mode_exits_at_once_when_the_provider_is_unreachable(loom_home: Path) -> None:
    r = run_loom(
        "agent",
        "start",
        "a",
        "--model",
        "ollama/x",
        "--stdin",
        input="hi",
        env={"OLLAMA_BASE_URL": "http://127.0.0.1:9", "LOOM_RETRIES": "1"},
        timeout=30,
    )
    assert r.returncode == 1
    assert "127.0.0.1:9" in r.stderr
    assert len(msgs(loom_home / "agents/a/inbox/.failed")) == 1


@contextlib.contextmanager
def terminal_session(server: LLMServer) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """`loom agent start a` on a pseudo-terminal: the process and the terminal's side."""
    leader, follower = pty.openpty()
    env = {**os.environ, **openai_env(server)}
    p = subprocess.Popen(
        loom_cmd("agent", "start", "a", "--model", "openai/gpt-test"),
        stdin=follower,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    os.close(follower)
    try:
        yield p, leader
    finally:
        os.close(leader)
        if p.poll() is None:
            p.kill()
        p.wait()
        if p.stdout is not None:
            p.stdout.close()


def test_interactive_session_keeps_its_context(server: LLMServer, loom_home: Path) -> None:
    with terminal_session(server) as (p, leader):
        os.write(leader, b"first question\n")
        assert p.stdout is not None
        assert p.stdout.readline() == b"echo: first question\n"
        os.write(leader, b"second question\n")
        assert p.stdout.readline() == b"echo: second question\n"
        os.write(leader, b"\x04")  # Ctrl-D ends the session
        assert p.wait(timeout=10) == 0
    turns = server.requests[-1].body["messages"]
    contents = [(t["role"], t["content"]) for t in turns if t["role"] != "system"]
    assert contents == [
        ("user", "first question"),
        ("assistant", "echo: first question"),
        ("user", "second question"),
    ]
