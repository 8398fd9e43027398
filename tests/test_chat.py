"""The chat on a terminal (`loom agent start NAME --model M` typed at a shell): a real
terminal through tmux, the real CLI, the fake OpenAI server on a real socket."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import run_loom, wait_for
from llm_server import LLMServer, Reply

needs_tmux = pytest.mark.skipif(
    shutil.which("tmux") is None,
    reason="tmux is not installed: the chat tests type into a real terminal through it",
)

MODEL = "openai/gpt-test"


class Terminal:
    """One `loom` command in a tmux pane on a private tmux server (its own socket)."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.socket = folder / "tmux.sock"
        self.conf = folder / "tmux.conf"
        self.conf.write_text("set -g history-limit 5000\n")
        self.status = folder / "exit-status"
        self.env = {**os.environ, **env}

    def tmux(self, *args: str) -> str:
        cmd = ["tmux", "-S", str(self.socket), "-f", str(self.conf), *args]
        done = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def start(self, *args: str, umask: str = "077") -> None:
        # The shell writes the exit status down (tmux's own record of it comes late at
        # times), then keeps the pane and its screen until the test ends; its trap keeps
        # it alive through the Ctrl-C meant for loom.
        command = shlex.join([sys.executable, "-m", "loom", *args])
        status = shlex.quote(str(self.status))
        shell = f"trap : INT; umask {umask}; {command}; echo $? > {status}; exec sleep 600"
        self.tmux("new-session", "-d", "-s", "chat", "-x", "150", "-y", "50", "sh", "-c", shell)

    def type(self, text: str) -> None:
        self.tmux("send-keys", "-t", "chat", "-l", text)

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "chat", *keys)

    def paste(self, text: str, folder: Path) -> None:
        """Paste `text` as a terminal does: bracketed when the program asked for it."""
        buffer = folder / "paste.txt"
        buffer.write_text(text)
        self.tmux("load-buffer", "-b", "p", str(buffer))
        self.tmux("paste-buffer", "-p", "-b", "p", "-t", "chat")

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-J", "-S", "-", "-t", "chat")

    def lines(self) -> list[str]:
        return [line.rstrip() for line in self.screen().splitlines() if line.strip()]

    def shows(self, text: str, timeout: float = 15.0) -> str:
        return self.wait(lambda: text in self.screen() and self.screen(), timeout, repr(text))

    def at_prompt(self, count: int = 1, timeout: float = 15.0) -> None:
        """Wait until the prompt has been shown `count` times, the last one waiting."""

        def ready() -> bool:
            lines = self.lines()
            prompts = [ln for ln in lines if ln == ">" or ln.startswith("> ")]
            return len(prompts) >= count and bool(lines) and lines[-1] == ">"

        self.wait(ready, timeout, f"prompt number {count}")

    def exit_status(self, timeout: float = 15.0) -> int:
        def dead() -> str | None:
            return self.status.read_text().strip() if self.status.exists() else None

        return int(self.wait(dead, timeout, "the command to exit"))

    def wait(self, condition: Callable[[], Any], timeout: float, what: str) -> Any:
        """wait_for, and the screen shown when it times out."""
        try:
            return wait_for(condition, timeout, what)
        except pytest.fail.Exception:
            pytest.fail(f"timed out after {timeout}s waiting for {what}; screen:\n{self.screen()}")

    def close(self) -> None:
        subprocess.run(
            ["tmux", "-S", str(self.socket), "kill-server"], env=self.env, capture_output=True
        )


@pytest.fixture
def term(tmp_path: Path, server: LLMServer) -> Iterator[Terminal]:
    t = Terminal(tmp_path, {**server.env(), "OPENAI_API_KEY": "sk-test"})
    yield t
    t.close()


def user_turns(server: LLMServer) -> list[str]:
    """The last user message of each request the model got."""
    return [r.body["messages"][-1]["content"] for r in server.requests]


def chat(term: Terminal, *extra: str, umask: str = "077") -> None:
    term.start("agent", "start", "chat", "--model", MODEL, *extra, umask=umask)
    term.at_prompt()


@needs_tmux
def test_banner_arrow_key_editing_and_history(
    term: Terminal, server: LLMServer, loom_home: Path, tmp_path: Path
) -> None:
    chat(term, umask="022")
    banner = term.lines()[0]
    assert banner.startswith(f"loom: chat with {MODEL} (agent chat).")
    assert "exit, quit or Ctrl-D" in banner and "!multi ... !end" in banner

    term.type("helo wrld")
    term.keys("Left", "Left", "Left", "Left", "o", "Enter")
    term.shows("echo: helo owrld")
    term.at_prompt(2)
    term.keys("Up", "Enter")  # the line before, recalled
    wait_for(lambda: len(server.requests) == 2, what="the second request")
    assert user_turns(server) == ["helo owrld", "helo owrld"]
    # The model saw no escape code, and the session keeps its context.
    assert [m["content"] for m in server.last.body["messages"]] == [
        "helo owrld",
        "echo: helo owrld",
        "helo owrld",
    ]
    term.at_prompt(3)
    term.type("exit")
    term.keys("Enter")
    assert term.exit_status() == 0
    assert len(server.requests) == 2

    history = loom_home / "agents" / "chat" / "chat_history"
    assert stat.S_IMODE(history.stat().st_mode) == 0o600  # under umask 022
    assert history.read_text() == "helo owrld\nhelo owrld\n"

    # A new session loads the history: Up brings back the last line.
    (tmp_path / "again").mkdir()
    term2 = Terminal(tmp_path / "again", term.env)
    try:
        chat(term2)
        term2.keys("Up")
        term2.shows("> helo owrld")
    finally:
        term2.close()


@needs_tmux
@pytest.mark.parametrize("ending", ["exit", "quit", "C-d", "  quit  "])
def test_exit_quit_and_ctrl_d_end_the_session_and_reach_no_model(
    term: Terminal, server: LLMServer, ending: str
) -> None:
    chat(term)
    if ending == "C-d":
        term.keys("C-d")
    else:
        term.type(ending)
        term.keys("Enter")
    assert term.exit_status() == 0
    assert server.requests == []


@needs_tmux
def test_multi_sends_the_lines_up_to_end_as_one_message(term: Terminal, server: LLMServer) -> None:
    chat(term)
    for line in ("!multi", "first line", "  second, indented", "!end"):
        term.type(line)
        term.keys("Enter")
    term.shows("echo: first line")
    assert user_turns(server) == ["first line\n  second, indented"]


@needs_tmux
def test_a_pasted_text_of_three_lines_is_one_model_call(
    term: Terminal, server: LLMServer, tmp_path: Path
) -> None:
    chat(term)
    term.paste("line one\nline two\nline three\n", tmp_path)
    term.shows("line three")
    term.keys("Enter")
    term.shows("echo: line one")
    term.at_prompt(2)
    assert user_turns(server) == ["line one\nline two\nline three"]


@needs_tmux
def test_continue_sends_the_previous_turns(term: Terminal, server: LLMServer) -> None:
    env = {**server.env(), "OPENAI_API_KEY": "sk-test"}
    for question in ("my name is Ada", "I like owls"):
        r = run_loom("agent", "start", "chat", "--model", MODEL, "--stdin", input=question, env=env)
        assert r.returncode == 0, r.stderr
    chat(term, "--continue")
    assert "4 earlier turns" in term.lines()[0]
    term.type("what is my name?")
    term.keys("Enter")
    term.shows("echo: what is my name?")
    assert [(m["role"], m["content"]) for m in server.last.body["messages"]] == [
        ("user", "my name is Ada"),
        ("assistant", "echo: my name is Ada"),
        ("user", "I like owls"),
        ("assistant", "echo: I like owls"),
        ("user", "what is my name?"),
    ]


@needs_tmux
def test_the_tokens_of_each_answer_are_in_usage_json_while_the_chat_waits(
    term: Terminal, server: LLMServer, loom_home: Path
) -> None:
    server.script(*[Reply("ok", input_tokens=7, output_tokens=2)] * 3)
    chat(term)
    for number, question in enumerate(("one", "two", "three"), start=2):
        term.type(question)
        term.keys("Enter")
        term.at_prompt(number)
    # Answered fast, one after the other: each one's tokens are written as it is done,
    # so `ps` shows them while the chat waits and a closed terminal loses none.
    usage = json.loads((loom_home / "agents" / "chat" / "usage.json").read_text())
    assert usage["models"] == {MODEL: {"input": 21, "output": 6}}


@needs_tmux
def test_without_continue_a_session_starts_afresh(term: Terminal, server: LLMServer) -> None:
    env = {**server.env(), "OPENAI_API_KEY": "sk-test"}
    r = run_loom("agent", "start", "chat", "--model", MODEL, "--stdin", input="before", env=env)
    assert r.returncode == 0, r.stderr
    chat(term)
    term.type("hello")
    term.keys("Enter")
    term.shows("echo: hello")
    assert [m["content"] for m in server.last.body["messages"]] == ["hello"]


@needs_tmux
def test_ctrl_c_stops_a_reply_not_the_session(
    term: Terminal, server: LLMServer, loom_home: Path
) -> None:
    words = " ".join(f"w{i}" for i in range(200))
    server.script(Reply(words, pause=0.05))
    chat(term)
    term.type("tell me a long story")
    term.keys("Enter")
    term.shows("w3 ")
    term.keys("C-c")
    term.shows("interrupted by SIGINT")
    term.at_prompt(2)
    assert "w199" not in term.screen()  # it stopped streaming

    term.type("still there?")
    term.keys("Enter")
    term.shows("echo: still there?")
    # The stopped reply is dropped: neither it nor its question is in the context,
    # and the message is failed as interrupted.
    assert [m["content"] for m in server.last.body["messages"]] == ["still there?"]
    agent = loom_home / "agents" / "chat"
    failed = [json.loads(p.read_text()) for p in (agent / "inbox" / ".failed").glob("*.error.json")]
    assert [f["error_type"] for f in failed] == ["interrupted"]
    conversation = "".join(p.read_text() for p in (agent / "conversations").iterdir())
    assert "w3" not in conversation and "tell me a long story" not in conversation

    # At the prompt, Ctrl-C drops what was typed; the session goes on.
    term.at_prompt(3)
    term.type("never sent")
    term.shows("> never sent")  # typed, as a person would, before the Ctrl-C
    term.keys("C-c")
    term.shows("> never sent^C")
    term.type("sent")
    term.keys("Enter")
    term.shows("echo: sent")
    assert user_turns(server)[-1] == "sent"

    # On an empty line it says how to leave; a second Ctrl-C ends the session: 130.
    term.at_prompt(5)
    term.keys("C-c")
    term.shows("Ctrl-C again or Ctrl-D")
    term.keys("C-c")
    assert term.exit_status() == 130
    assert len(server.requests) == 3


def test_continue_is_refused_with_detach() -> None:
    r = run_loom("agent", "start", "chat", "--model", "echo", "-d", "--continue")
    assert r.returncode == 2
    assert "--continue" in r.stderr


def test_continue_takes_whole_recent_answers_without_tool_turns(
    server: LLMServer, loom_home: Path
) -> None:
    """The context --continue loads, seen through --stdin: the last 40 turns at most,
    whole answers only, no tool calls or results, unreadable lines skipped."""
    folder = loom_home / "agents" / "chat" / "conversations"
    folder.mkdir(parents=True)
    old = [{"role": "user", "content": "old", "msg": "m0"}]
    old.append({"role": "assistant", "content": "old answer", "msg": "m0"})
    (folder / "2026-01-01.ndjson").write_text("".join(json.dumps(r) + "\n" for r in old))
    records = []
    for n in range(1, 21):
        records.append({"role": "user", "content": f"q{n}", "msg": f"m{n}"})
        if n == 20:
            call = [{"id": "c1", "name": "calc", "arguments": "{}"}]
            records.append({"role": "assistant", "content": "", "tool_calls": call, "msg": "m20"})
            records.append({"role": "tool", "content": "2", "tool": "calc", "msg": "m20"})
        records.append({"role": "assistant", "content": f"a{n}", "msg": f"m{n}"})
    lines = [json.dumps(r) for r in records]
    lines.insert(5, "{not json")
    (folder / "2026-01-02.ndjson").write_text("\n".join(lines) + "\n")
    env = {**server.env(), "OPENAI_API_KEY": "sk-test"}
    r = run_loom(
        "agent", "start", "chat", "--model", MODEL, "--stdin", "--continue", input="now", env=env
    )
    assert r.returncode == 0, r.stderr
    sent = [(m["role"], m["content"]) for m in server.last.body["messages"]]
    # 20 answers of 2 turns fill the 40: the older file's answer is left out.
    expected = [t for n in range(1, 21) for t in (("user", f"q{n}"), ("assistant", f"a{n}"))]
    assert sent == [*expected, ("user", "now")]


@needs_tmux
def test_sigterm_ends_the_chat_with_143(term: Terminal, loom_home: Path) -> None:
    chat(term)
    pid = int((loom_home / "agents" / "chat" / "pid").read_text())
    os.kill(pid, signal.SIGTERM)
    assert term.exit_status() == 143
    assert (loom_home / "agents" / "chat" / "status").read_text().strip() == "stopped"


@needs_tmux
def test_the_chat_does_not_serve_its_inbox_and_stdin_elsewhere_is_told_so(
    term: Terminal, server: LLMServer
) -> None:
    chat(term)
    env = {**server.env(), "OPENAI_API_KEY": "sk-test"}
    r = run_loom("agent", "start", "chat", "--model", MODEL, "--stdin", input="hi", env=env)
    assert r.returncode == 1
    assert "is a chat on a terminal" in r.stderr and "does not answer its inbox" in r.stderr
    assert server.requests == []
    term.type("exit")
    term.keys("Enter")
    assert term.exit_status() == 0
    # Once the chat has ended, --stdin answers as usual.
    r = run_loom("agent", "start", "chat", "--model", MODEL, "--stdin", input="hi", env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "echo: hi\n"


@needs_tmux
def test_a_fifo_in_place_of_the_history_file_does_not_hang_the_chat(
    term: Terminal, server: LLMServer, loom_home: Path
) -> None:
    folder = loom_home / "agents" / "chat"
    folder.mkdir(parents=True)
    os.mkfifo(folder / "chat_history")
    chat(term)
    term.type("hello")
    term.keys("Enter")
    term.at_prompt(2)
    term.type("exit")
    term.keys("Enter")
    assert term.exit_status() == 0
    assert user_turns(server) == ["hello"]
