"""The agent runner: one message at a time from inbox, through the model, to outbox (SPEC 5)."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from loom import atomic
from loom.errors import ProviderError, UnreadableMessage, UnsupportedVersion
from loom.home import ProcessDir, today
from loom.logs import Log
from loom.message import Message
from loom.providers.base import Completion, Provider, Request, TextSink, Turn
from loom.queue import Queue
from loom.retry import RetryPolicy
from loom.worker import Stopping, Worker


@dataclass
class Outcome:
    """What happened to one message, for callers that report it (foreground `--stdin`)."""

    name: str
    reply: Message | None = None
    failed: bool = False
    error: str | None = None


def system_prompt(proc: ProcessDir) -> str | None:
    """`prompt.md` followed by every file in `memory/`, in name order (SPEC 3)."""
    parts: list[str] = []
    try:
        base = (proc.path / "prompt.md").read_text("utf-8").strip()
    except FileNotFoundError:
        base = ""
    if base:
        parts.append(base)
    if proc.memory.is_dir():
        for entry in sorted(proc.memory.iterdir()):
            if entry.is_file() and not entry.name.startswith("."):
                text = entry.read_text("utf-8", errors="replace").strip()
                if text:
                    parts.append(f"# Memory: {entry.name}\n\n{text}")
    return "\n\n".join(parts) or None


class _ResumingSink:
    """Forwards streamed text, skipping what an earlier attempt already forwarded.

    When a stream breaks and the call is retried, the reader of stdout has already
    seen the first part of the answer; it should not see it twice.
    """

    def __init__(self, sink: TextSink) -> None:
        self.sink = sink
        self.forwarded = 0
        self.current = 0

    def new_attempt(self) -> None:
        self.current = 0

    def __call__(self, text: str) -> None:
        start = self.current
        self.current += len(text)
        if self.current <= self.forwarded:
            return
        fresh = text[max(0, self.forwarded - start) :]
        self.forwarded = self.current
        self.sink(fresh)


@dataclass
class AgentRunner:
    """Handles one claimed message at a time; the Worker drives it (loom.worker.Handler)."""

    proc: ProcessDir
    provider: Provider
    model: str
    model_id: str
    log: Log
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    sink: TextSink | None = None
    # The turns of an interactive session, sent with every request; None: no context.
    context: list[Turn] | None = None
    worker: Worker | None = None
    outcomes: list[Outcome] = field(default_factory=list)
    # Called after each message is answered or failed (the foreground prints here).
    on_done: Callable[[Outcome], None] | None = None

    def __post_init__(self) -> None:
        self.queue = Queue(self.proc.inbox, self.proc.outbox)

    # -- Handler -------------------------------------------------------------------
    def recover(self) -> None:
        report = self.queue.recover()
        for name in report.acknowledged:
            self.log.info("recovered", msg=name, action="acknowledged")
        for name in report.failed:
            self.log.info("recovered", msg=name, action="failed")
        for name in report.requeued:
            self.log.info("recovered", msg=name, action="requeued")

    def next_deadline(self) -> float | None:
        return None

    def on_deadline(self) -> None:
        return None

    def handle(self, name: str) -> None:
        """Answer the claimed message `name`: reply and acknowledge, or fail it."""
        try:
            msg = self.queue.read_claimed(name)
        except UnsupportedVersion:
            self.queue.put_back(name)
            raise
        except (UnreadableMessage, UnicodeDecodeError) as exc:
            if self.queue.half_written(name):
                self.log.info("half-written", msg=name, detail="looking again shortly")
                return
            self.queue.quarantine(name, str(exc))
            self.log.error("unreadable", msg=name, error=str(exc))
            self._done(Outcome(name, failed=True, error=f"unreadable message: {exc}"))
            return
        self.log.info("claimed", msg=name, sender=msg.sender)
        started = time.monotonic()
        try:
            completion, attempts = self._call(msg, name)
        except Stopping:
            self.queue.put_back(name)
            self.log.info("put back", msg=name, detail="stopped during the model call")
            raise
        except ProviderError as exc:
            self._fail(msg, name, exc, attempts=exc.attempts)
            return
        reply = msg.reply(self.proc.name, completion.text, parent_filename=name)
        self.queue.emit(reply)
        self.queue.acknowledge(name)
        self._remember(msg, name, completion.text)
        self.log.info(
            "replied",
            msg=name,
            reply=reply.filename,
            attempts=attempts,
            duration_ms=round((time.monotonic() - started) * 1000, 1),
            input_tokens=completion.usage.input_tokens,
            output_tokens=completion.usage.output_tokens,
        )
        self._done(Outcome(name, reply=reply))

    # -- internals -----------------------------------------------------------------
    def _done(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        if self.on_done is not None:
            self.on_done(outcome)

    def _request(self, msg: Message) -> Request:
        turns = [*(self.context or []), Turn("user", msg.body)]
        return Request(model=self.model_id, turns=tuple(turns), system=system_prompt(self.proc))

    def _call(self, msg: Message, name: str) -> tuple[Completion, int]:
        request = self._request(msg)
        sink = _ResumingSink(self.sink) if self.sink is not None else None
        attempt = 0
        while True:
            attempt += 1
            if sink is not None:
                sink.new_attempt()
            try:
                with self._interruptible():
                    return self.provider.complete(request, sink or _discard), attempt
            except ProviderError as exc:
                delay = self.retry.delay(attempt - 1, exc)
                if delay is None:
                    exc.attempts = attempt
                    raise
                self.log.warning(
                    "retrying",
                    msg=name,
                    attempt=attempt,
                    error_type=exc.error_type,
                    error=str(exc),
                    delay_s=delay,
                )
                self._sleep(delay)

    def _interruptible(self) -> contextlib.AbstractContextManager[None]:
        return self.worker.interruptible() if self.worker else contextlib.nullcontext()

    def _sleep(self, seconds: float) -> None:
        with self._interruptible():
            time.sleep(seconds)

    def _fail(self, msg: Message, name: str, exc: ProviderError, *, attempts: int) -> None:
        text = f"{self.proc.name} could not answer: {exc}"
        reply = msg.reply(self.proc.name, text, parent_filename=name, error=True)
        self.queue.fail(
            name, reply, error_type=exc.error_type, last_error=str(exc), attempts=attempts
        )
        self.log.error(
            "failed", msg=name, error_type=exc.error_type, error=str(exc), attempts=attempts
        )
        self._done(Outcome(name, reply=reply, failed=True, error=str(exc)))

    def _remember(self, msg: Message, name: str, answer: str) -> None:
        if self.context is not None:
            self.context.extend([Turn("user", msg.body), Turn("assistant", answer)])
        self.proc.conversations.mkdir(mode=0o700, exist_ok=True)
        path = self.proc.conversations / f"{today()}.ndjson"
        ts = int(time.time() * 1000)
        turns = [
            json.dumps({"role": role, "content": text, "ts": ts, "msg": name}, ensure_ascii=False)
            for role, text in (("user", msg.body), ("assistant", answer))
        ]
        atomic.append_line(path, "\n".join(turns))


def _discard(text: str) -> None:
    return None
