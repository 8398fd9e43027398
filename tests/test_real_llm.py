"""loom against a real model server: llama.cpp's llama-server with SmolLM2-135M-Instruct,
built by scripts/real-llm (marker `real`; scripts/test runs these after the fast suite).

The server and its parsers are real; the model is tiny, so the tests check what loom
does with its answers (streamed, recorded, counted, routed), never what it says. Where
the model would rarely do something by itself (call a tool), a small proxy between loom
and the server asks for it in the request (`tool_choice`), as a user's settings would.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ROOT, kill_supervisor, run_loom, wait_for
from plugin_kit import install_example

pytestmark = pytest.mark.real

TEMPLATE = Path(__file__).with_name("real_llm_template.jinja")
KEY = "sk-real-test-5d6e7f"
SYSTEM = "Answer in one short sentence."
# loom asks for up to 4096 tokens, and the tiny model can ramble for as many: every test
# talks to the server through a proxy that caps an answer at this many, as a user's
# max_tokens setting would, so that each call takes a second or two.
MAX_TOKENS = 128


@dataclass(frozen=True)
class RealServer:
    url: str  # through the proxy that caps answers
    direct: str  # llama-server itself
    log: Path

    def env(self, base: str | None = None) -> dict[str, str]:
        """Provider settings pointing loom's OpenAI and Anthropic paths at `base`."""
        base = base or self.url
        return {
            "OPENAI_BASE_URL": f"{base}/v1",
            "OPENAI_API_KEY": KEY,
            "ANTHROPIC_BASE_URL": base,
            "ANTHROPIC_API_KEY": KEY,
            "LOOM_HTTP_TIMEOUT": "60",
        }


def _settings() -> dict[str, str]:
    """LOOM_REAL_LLM_* as scripts/real-llm reports them (or as set in the environment)."""
    found = {k: v for k, v in os.environ.items() if k.startswith("LOOM_REAL_LLM_")}
    if "LOOM_REAL_LLM_SERVER" in found:
        return found
    out = subprocess.run(
        [str(ROOT / "scripts/real-llm"), "env"], capture_output=True, text=True, timeout=30
    ).stdout
    found.update(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServer]:
    settings = _settings()
    required = os.environ.get("LOOM_REAL_LLM_REQUIRED") == "1"
    if "LOOM_REAL_LLM_UNAVAILABLE" in settings:
        pytest.skip(
            f"no real model server on this machine: {settings['LOOM_REAL_LLM_UNAVAILABLE']}"
        )
    if not settings.get("LOOM_REAL_LLM_SERVER"):
        message = "the real model server is not built: run scripts/real-llm build (~10 min)"
        if required:
            pytest.fail(message)
        pytest.skip(message)
    log = tmp_path_factory.mktemp("llama") / "server.log"
    env = {**os.environ, "LD_LIBRARY_PATH": settings["LOOM_REAL_LLM_LIBRARY_PATH"]}
    port = _free_port()
    command = [
        settings["LOOM_REAL_LLM_SERVER"],
        *("-m", settings["LOOM_REAL_LLM_MODEL"]),
        *("--host", "127.0.0.1", "--port", str(port)),
        *("-c", "2048", "-t", "2", "--jinja"),
        *("--chat-template-file", str(TEMPLATE)),
    ]
    with open(log, "wb") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if server.poll() is not None:
            raise AssertionError(f"llama-server exited {server.returncode}: {log.read_text()}")
        try:
            return httpx.get(f"{url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(healthy, timeout=120, what="llama-server to load its model")
        with Proxy(url, edit_request=cap_tokens) as capped:
            yield RealServer(capped.url, url, log)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


# ------------------------------------------------------------------ helpers


def ask(
    real: RealServer,
    model: str,
    text: str,
    *,
    base: str | None = None,
    system: str | None = SYSTEM,
    **kw: Any,
) -> Any:
    options = ("--system", system) if system else ()
    return run_loom(
        *("agent", "start", "a", "--model", model, *options, "--stdin"),
        input=text,
        env=real.env(base),
        timeout=180,
        **kw,
    )


def events(home: Path, agent: str, event: str) -> list[dict[str, Any]]:
    text = "".join(p.read_text() for p in sorted((home / "agents" / agent / "logs").glob("*")))
    return [e for e in map(json.loads, text.splitlines()) if e.get("event") == event]


def outbox(home: Path, agent: str) -> list[dict[str, Any]]:
    folder = home / "agents" / agent / "outbox"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.msg"))]


def conversation(home: Path, agent: str) -> list[dict[str, Any]]:
    folder = home / "agents" / agent / "conversations"
    return [json.loads(x) for p in sorted(folder.glob("*")) for x in p.read_text().splitlines()]


def no_key_anywhere(home: Path) -> None:
    for path in home.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert KEY.encode() not in path.read_bytes(), path


# ------------------------------------------------------------------ the tests


@pytest.mark.parametrize("model", ["openai/smollm2", "anthropic/smollm2"])
def test_stdin_streams_a_real_answer_and_records_it(
    real: RealServer, loom_home: Path, model: str
) -> None:
    r = ask(real, model, "Say hello to Ada.")
    assert r.returncode == 0, r.stderr
    answer = r.stdout.rstrip("\n")
    assert answer.strip(), "the model's answer reached stdout"
    [reply] = outbox(loom_home, "a")
    assert reply["body"] == answer and reply["from"] == "a" and not reply.get("error")
    [replied] = events(loom_home, "a", "replied")
    assert replied["input_tokens"] > 5 and replied["output_tokens"] > 0
    user, assistant = conversation(loom_home, "a")
    assert (user["content"], assistant["content"]) == ("Say hello to Ada.", answer)
    no_key_anywhere(loom_home)


def test_a_cached_prompt_counts_the_same_input_on_the_anthropic_path(
    real: RealServer, loom_home: Path
) -> None:
    # llama-server reuses the prompt it has cached: the second identical request reports
    # most of its input as cache_read_input_tokens, which loom counts in.
    counts = []
    for _ in range(2):
        r = ask(real, "anthropic/smollm2", "Name a colour.")
        assert r.returncode == 0, r.stderr
        counts.append(events(loom_home, "a", "replied")[-1])
    first, second = counts
    assert second["cache_read_tokens"] > 0
    assert second["input_tokens"] == first["input_tokens"]


def test_a_detached_agent_answers_what_is_sent(real: RealServer, loom_home: Path) -> None:
    env = real.env()
    try:
        r = run_loom("agent", "start", "d", "--model", "openai/smollm2", "-d", env=env)
        assert r.returncode == 0, r.stderr
        sent = run_loom("send", "d", "Say hello.", env=env)
        assert sent.returncode == 0, sent.stderr
        [reply] = wait_for(lambda: outbox(loom_home, "d"), timeout=120, what="a reply")
        assert reply["body"].strip() and not reply.get("error")
        ps = json.loads(run_loom("agent", "ps", "--json", env=env).stdout)
        [row] = [p for p in ps if p["name"] == "d"]
        assert row["status"] in ("idle", "running")
    finally:
        run_loom("agent", "stop", "d", env=env)
        kill_supervisor(loom_home, signal.SIGTERM)


def test_a_weave_of_two_real_agents_through_a_pipe(
    real: RealServer, loom_home: Path, tmp_path: Path
) -> None:
    weave = tmp_path / "weave"
    weave.mkdir()
    (weave / "loom.yml").write_text(
        "version: 1\n"
        "pipes:\n"
        "  ask-back:\n"
        "    - map: \"join('', ['Reply to this in one sentence: ', @])\"\n"
        "agents:\n"
        "  - name: first\n"
        "    model: openai/smollm2\n"
        f"    system: {SYSTEM}\n"
        "  - name: second\n"
        "    model: anthropic/smollm2\n"
        f"    system: {SYSTEM}\n"
        "    from: [{agent: first, pipe: ask-back}]\n"
    )
    env = real.env()
    try:
        r = run_loom("up", "-d", cwd=weave, env=env)
        assert r.returncode == 0, r.stderr
        sent = run_loom("send", "first", "Tell me about owls.", env=env)
        assert sent.returncode == 0, sent.stderr
        [last] = wait_for(lambda: outbox(loom_home, "second"), timeout=180, what="a reply")
        assert last["body"].strip() and not last.get("error")
        # The second agent was asked what the pipe made of the first one's answer.
        said = [t["content"] for t in conversation(loom_home, "first") if t["role"] == "assistant"]
        asked = [t["content"] for t in conversation(loom_home, "second") if t["role"] == "user"]
        assert asked == ["Reply to this in one sentence: " + said[0]]
        # Lineage: message sent to `first` / first's reply / the pipe's output.
        [sent_to_first] = [
            t["msg"] for t in conversation(loom_home, "first") if t["role"] == "user"
        ]
        chain = last["origin"].split("/")
        assert chain[0] == sent_to_first and len(chain) == 3, chain
    finally:
        run_loom("down", cwd=weave, env=env)
        kill_supervisor(loom_home, signal.SIGTERM)


# ------------------------------------------------------------------ tools, through a proxy


@dataclass
class Proxy:
    """Forwards requests to the real server, editing what the test asks it to."""

    upstream: str
    edit_request: Callable[[dict[str, Any]], None] = lambda body: None
    # Applied to each streamed `data:` payload of the response to request number N.
    edit_event: Callable[[int, dict[str, Any]], None] = lambda number, event: None
    requests: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)

    def __enter__(self) -> Proxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                proxy.edit_request(body)
                number = len(proxy.requests)
                proxy.requests.append(body)
                headers = {k: v for k, v in self.headers.items() if k.lower() in _FORWARDED}
                with httpx.stream(
                    "POST", proxy.upstream + self.path, json=body, headers=headers, timeout=120
                ) as reply:
                    proxy.statuses.append(reply.status_code)
                    self.send_response(reply.status_code)
                    self.send_header("Content-Type", reply.headers.get("content-type", ""))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    for line in reply.iter_lines():
                        if line.startswith("data: {"):
                            event = json.loads(line[6:])
                            proxy.edit_event(number, event)
                            line = "data: " + json.dumps(event)
                        self.wfile.write(line.encode() + b"\n")
                        self.wfile.flush()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


_FORWARDED = {"authorization", "x-api-key", "anthropic-version", "accept"}


QUESTION = "What is 6 times 7? Use the calc tool."


@pytest.fixture
def calc_project(tmp_path: Path) -> Path:
    install_example(tmp_path / ".loom" / "plugins", "calc")
    return tmp_path


@pytest.mark.parametrize("model", ["openai/smollm2", "anthropic/smollm2"])
def test_a_real_tool_call_runs_the_tool_and_the_model_answers_with_its_result(
    real: RealServer, loom_home: Path, calc_project: Path, model: str
) -> None:
    with Proxy(real.direct, edit_request=_require_a_tool) as proxy:
        r = ask(real, model, QUESTION, base=proxy.url, system=None, cwd=calc_project)
    assert r.returncode == 0, r.stderr
    assert proxy.statuses == [200, 200]
    [result] = events(loom_home, "a", "tool_result")
    assert result["status"] == "ok"
    turns = conversation(loom_home, "a")
    assert [t["role"] for t in turns] == ["user", "assistant", "tool", "assistant"]
    assert turns[1]["tool_calls"][0]["name"] == "calc"
    assert turns[3]["content"] == r.stdout.rstrip("\n")


def test_broken_tool_arguments_are_answered_and_replayed_so_the_real_server_accepts_them(
    real: RealServer, loom_home: Path, calc_project: Path
) -> None:
    def break_arguments(number: int, event: dict[str, Any]) -> None:
        # The first answer's call gets a raw newline inside a string: not JSON, as a
        # small model writes it now and then.
        for choice in event.get("choices") or [] if number == 0 else []:
            for call in (choice.get("delta") or {}).get("tool_calls") or []:
                function = call.get("function") or {}
                if function.get("arguments", "").startswith("{"):
                    function["arguments"] = '{"note": "a\nb", ' + function["arguments"][1:]

    with Proxy(real.direct, _require_a_tool, break_arguments) as proxy:
        r = ask(real, "openai/smollm2", QUESTION, base=proxy.url, system=None, cwd=calc_project)
    assert r.returncode == 0, r.stderr
    # The server accepted the replayed conversation (it answered 500 to the raw text).
    assert proxy.statuses == [200, 200], (r.stdout, conversation(loom_home, "a"))
    [result] = events(loom_home, "a", "tool_result")
    assert result["status"] == "error"
    replayed = json.dumps(proxy.requests[1]["messages"])
    assert "the arguments for calc are not valid JSON" in replayed


def cap_tokens(body: dict[str, Any]) -> None:
    for field_name in ("max_tokens", "max_completion_tokens"):
        if field_name in body:
            body[field_name] = min(body[field_name], MAX_TOKENS)


def _require_a_tool(body: dict[str, Any]) -> None:
    """The first call of an answer must call a tool; after its result, the model answers
    in words. Temperature 0 makes the tiny model follow the template's examples."""
    cap_tokens(body)
    if not body.get("tools"):
        return
    body["temperature"] = 0
    messages = body.get("messages") or []
    answered = any(m.get("role") == "tool" for m in messages) or any(
        isinstance(m.get("content"), list)
        and any(block.get("type") == "tool_result" for block in m["content"])
        for m in messages
    )
    if answered:
        body.pop("tools")
    elif _anthropic(body):
        body["tool_choice"] = {"type": "any"}
    else:
        body["tool_choice"] = "required"
        body["parallel_tool_calls"] = False


def _anthropic(body: dict[str, Any]) -> bool:
    """Messages API tools have `input_schema`; chat completions tools have `function`."""
    return any("input_schema" in tool for tool in body.get("tools") or [])


def test_the_server_really_rejects_arguments_replayed_unchanged(real: RealServer) -> None:
    # What the replay above avoids: llama-server parses the conversation it is sent.
    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "calc", "arguments": '{"x": "a\nb"'},
    }
    body = {
        "model": "smollm2",
        "max_tokens": 8,
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "error"},
        ],
    }
    reply = httpx.post(f"{real.direct}/v1/chat/completions", json=body, timeout=60)
    assert reply.status_code == 500 and "arguments" in reply.text
