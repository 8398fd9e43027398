"""The agent runner: a message from inbox, through the model, to outbox (SPEC 5).

One runner answers up to its worker's concurrency of messages at once; each model call
passes its CallGate first (the rate limit, and the back-off after a 429).

When the model asks for tools, the runner has them run and calls the model again with
their results, until it answers or the round limit is reached (SPEC 12).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from loom import wording
from loom.agent.batches import DEFAULT_INPUT, prompt_text
from loom.agent.gate import CallGate
from loom.agent.prompt import system_prompt
from loom.agent.retry import MAX_RETRY_AFTER_S, RetryPolicy
from loom.agent.structured import SchemaMismatch, check_reply, correction
from loom.errors import ProviderError, is_disk_full
from loom.providers.base import Completion, Provider, Request, TextSink, Turn
from loom.providers.options import split_limit
from loom.store import atomic
from loom.store.files import json_encoder
from loom.store.home import ProcessDir, now_iso, today
from loom.store.logs import Log
from loom.store.message import Message
from loom.store.queue import Queue
from loom.store.usage import UsageCounter
from loom.store.worker import Stopping, Worker, read_claimed
from loom.tools.toolbox import Toolbox, ToolRoundsExceeded

# Between the texts of successive model calls in one answer (before and after tools).
ROUND_SEPARATOR = "\n\n"
# A conversation-file line, built once (`json_encoder`): every answer writes two or more.
_record_line = json_encoder(ensure_ascii=False)


@dataclass
class Outcome:
    """What happened to one message, for callers that report it (foreground `--stdin`)."""

    name: str
    reply: Message | None = None
    failed: bool = False
    error: str | None = None


@dataclass
class Answer:
    """What answering one message took: the turns it added (the user's first, then the
    model's and the tools' in order), and the model calls it cost."""

    turns: list[Turn]
    attempts: int = 0
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    # With a schema: the answer as compact JSON, once it was valid against it.
    structured: str | None = None

    @property
    def body(self) -> str:
        """What the reply carries: the structured answer, or else the text."""
        return self.structured if self.structured is not None else self.text

    @property
    def text(self) -> str:
        """The reply: the text of every model call, as it was streamed."""
        texts = [t.content for t in self.turns[1:] if t.role == "assistant" and t.content]
        return ROUND_SEPARATOR.join(texts)

    @property
    def tools_used(self) -> list[str]:
        """The tools called, each named once, in order of first use."""
        names = [call.name for t in self.turns for call in t.tool_calls]
        return list(dict.fromkeys(names))

    @property
    def reasoning(self) -> str:
        """What the model reasoned apart from its answer, over every call."""
        texts = [t.reasoning for t in self.turns[1:] if t.reasoning]
        return ROUND_SEPARATOR.join(texts)

    def add(self, completion: Completion, attempts: int) -> None:
        turn = Turn(
            "assistant",
            completion.text,
            tool_calls=completion.tool_calls,
            reasoning=completion.reasoning,
        )
        self.turns.append(turn)
        self.attempts += attempts
        usage = completion.usage
        self.input_tokens = _plus(self.input_tokens, usage.input_tokens)
        self.output_tokens = _plus(self.output_tokens, usage.output_tokens)
        self.cache_read_tokens = _plus(self.cache_read_tokens, usage.cache_read_tokens)
        self.cache_write_tokens = _plus(self.cache_write_tokens, usage.cache_write_tokens)


def _plus(total: int | None, count: int | None) -> int | None:
    """A running token count: None until some call reports one."""
    return total if count is None else (total or 0) + count


class EmptyAnswer(ProviderError):
    """The model's final answer had no text: a reply nobody can use, so the message fails
    (not retried) instead of an empty reply going out as if it were an answer."""

    def __init__(self, answer: Answer) -> None:
        thought = answer.reasoning
        reasoned = wording.count(len(thought), "character")
        detail = (
            f"it only reasoned ({reasoned}, kept in the conversation file)"
            if thought
            else "it sent no text"
        )
        super().__init__(
            f"the model's answer was empty: {detail}", error_type="empty_answer", transient=False
        )


class _ResumingSink:
    """Forwards streamed text, skipping what an earlier attempt already forwarded.

    When a stream breaks and the call is retried, the reader of stdout has already
    seen the first part of the answer; it should not see it twice.
    """

    def __init__(self, sink: TextSink, lead: str = "") -> None:
        self.sink = sink
        self.lead = lead  # sent before the first text, if any text comes
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
        if self.lead:
            self.sink(self.lead)
            self.lead = ""
        self.sink(fresh)


@dataclass
class AgentRunner:
    """Answers claimed messages; the Worker drives it (loom.store.worker.Handler), from
    several threads at once when its concurrency is above 1."""

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
    # What happened to each message, for a caller that reports them (`agents.answer`
    # gives a list); None: not kept, since a served agent answers messages without end.
    outcomes: list[Outcome] | None = None
    # Called after each message is answered or failed (the foreground prints here).
    on_done: Callable[[Outcome], None] | None = None
    # The tools offered to the model; None: none.
    toolbox: Toolbox | None = None
    # Every model call waits here for its turn (rate limit, back-off after a 429).
    gate: CallGate = field(default_factory=CallGate)
    # The JSON Schema every reply must be valid against (checked); None: free text.
    schema: Mapping[str, Any] | None = None
    # Model options (checked against the provider when the agent was configured).
    options: Mapping[str, Any] = field(default_factory=dict)
    # What the model reads of a batch: `bodies` (labelled) or `envelopes` (the JSON).
    input_mode: str = DEFAULT_INPUT

    def __post_init__(self) -> None:
        self.queue = Queue(self.proc.inbox, self.proc.outbox)
        # One answer's lines go into the conversation file together, never between
        # another's (append_line is one write, but one write may be cut short).
        self._record_lock = threading.Lock()
        # Token totals per model, kept in usage.json by this process, the queue's owner.
        self.usage = UsageCounter(self.proc)
        self._conversation = atomic.Appender()

    # -- Handler -------------------------------------------------------------------
    def recover(self) -> list[str]:
        report = self.queue.recover()
        for name in report.acknowledged:
            self.log.info("recovered", msg=name, action="acknowledged")
        for name in report.failed:
            self.log.info("recovered", msg=name, action="failed")
        for name in report.requeued:
            self.log.info("recovered", msg=name, action="requeued")
        return []

    def next_deadline(self) -> float | None:
        return self.usage.due()

    def on_deadline(self) -> None:
        self._usage(self.usage.flush)

    def close(self) -> None:
        self._usage(self.usage.flush)

    def _count(self, tokens_in: int | None, tokens_out: int | None) -> None:
        # Deferred only while the worker's loop serves: it writes what is owed when due
        # (`on_deadline`). A chat or `--stdin` answers outside it and writes at once.
        defer = self.worker is not None and self.worker.serving
        self._usage(lambda: self.usage.add(self.model, tokens_in, tokens_out, defer))

    def _usage(self, update: Callable[[], None]) -> None:
        """Count tokens or write the totals owed (`UsageCounter`); a usage.json that
        cannot be written is said once and stops no answer."""
        try:
            update()
        except OSError as exc:
            if is_disk_full(exc):
                raise
            # Tried again after a while; the messages go on being answered.
            if not self.usage.failing:
                self.usage.failing = True
                self.log.error("usage.json not written", error=f"{type(exc).__name__}: {exc}")

    def handle(self, name: str) -> None:
        """Answer the claimed message `name`: reply and acknowledge, or fail it."""
        msg = read_claimed(self.queue, name, self.log)
        if not isinstance(msg, Message):
            if msg is not None:
                self._done(Outcome(name, failed=True, error=f"unreadable message: {msg}"))
            return
        self.log.info("claimed", msg=name, sender=msg.sender)
        started = time.monotonic()
        answer = Answer([Turn("user", prompt_text(msg, self.input_mode))])
        try:
            self._answer(answer, name)
        except Stopping:
            self._put_back(name)
            raise
        except ProviderError as exc:
            with self._settling(name):
                self._fail(msg, name, exc, attempts=exc.attempts, answer=answer)
            return
        with self._settling(name):
            self._settle(msg, name, answer, started)

    def _settle(self, msg: Message, name: str, answer: Answer, started: float) -> None:
        """Write the outcome of a finished answer: the reply, or the failure if it is empty."""
        if not answer.body.strip():
            self._record(name, answer)
            self._fail(msg, name, EmptyAnswer(answer), attempts=answer.attempts, answer=answer)
            return
        if answer.structured is not None and self.sink is not None:
            self.sink(answer.structured)  # held back until it was known to be valid
        reply = msg.reply(self.proc.name, answer.body, parent_filename=name)
        self.queue.emit_answer(reply)
        # Recorded before the acknowledgement, so a message done has its turns in the
        # conversation file and its tokens counted; acknowledged even if recording fails,
        # since its reply is out.
        try:
            self._remember(name, answer)
            self._count(answer.input_tokens, answer.output_tokens)
        finally:
            self.queue.acknowledge_answered(name)
        self.log.info(
            "replied",
            msg=name,
            reply=reply.filename,
            model=self.model,
            attempts=answer.attempts,
            duration_ms=round((time.monotonic() - started) * 1000, 1),
            input_tokens=answer.input_tokens,
            output_tokens=answer.output_tokens,
            cache_read_tokens=answer.cache_read_tokens,
            cache_write_tokens=answer.cache_write_tokens,
            tools=answer.tools_used or None,
        )
        self._done(Outcome(name, reply=reply))

    # -- internals -----------------------------------------------------------------
    def _done(self, outcome: Outcome) -> None:
        if self.outcomes is not None:
            self.outcomes.append(outcome)
        if self.on_done is not None:
            self.on_done(outcome)

    def _answer(self, answer: Answer, name: str) -> Answer:
        """Call the model; while it asks for tools, run them and call it again. The
        calls are added to `answer` as they return, so a failure still knows their cost."""
        system = system_prompt(self.proc)
        tools = self.toolbox.offer() if self.toolbox is not None else ()
        rounds = 0
        corrected = False
        while True:
            turns = (*(self.context or []), *answer.turns)
            limit, options = split_limit(self.options, Request.max_tokens)
            request = Request(
                self.model_id,
                turns,
                system=system,
                max_tokens=limit,
                tools=tools,
                schema=self.schema,
                options=options,
            )
            lead = ROUND_SEPARATOR if answer.text else ""
            try:
                completion, attempts = self._call(request, name, lead)
            except ProviderError as exc:
                exc.attempts += answer.attempts
                raise
            answer.add(completion, attempts)
            if not completion.tool_calls and self.schema is not None:
                checked = check_reply(completion.text, self.schema)
                if checked.body is not None:
                    answer.structured = checked.body
                    return answer
                problem = checked.problem or ""
                self.log.warning("invalid structured reply", msg=name, error=problem)
                if corrected:
                    self._record(name, answer)
                    mismatch = SchemaMismatch(problem)
                    mismatch.attempts = answer.attempts
                    raise mismatch
                corrected = True
                answer.turns.append(Turn("user", correction(problem, self.schema)))
                continue
            if not completion.tool_calls:
                return answer
            if self.toolbox is None or rounds >= self.toolbox.settings.rounds:
                error = ToolRoundsExceeded(rounds)
                error.attempts = answer.attempts
                raise error
            rounds += 1
            with self._interruptible():
                results = self.toolbox.run(completion.tool_calls, name)
            answer.turns.append(Turn("tool", "", tool_results=results))

    def _call(self, request: Request, name: str, lead: str = "") -> tuple[Completion, int]:
        # A structured answer is printed whole once it is valid (`_settle`), not streamed.
        streams = self.sink is not None and self.schema is None
        sink = _ResumingSink(self.sink, lead) if self.sink is not None and streams else None
        attempt = 0
        while True:
            attempt += 1
            if sink is not None:
                sink.new_attempt()
            self.gate.enter(self._sleep)
            try:
                with self._interruptible():
                    return self.provider.complete(request, sink or _discard), attempt
            except ProviderError as exc:
                if exc.error_type == "rate_limited" and exc.retry_after is not None:
                    self._hold(name, exc.retry_after)
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
        if self.worker is not None:
            self.worker.pause(seconds)
        else:
            time.sleep(seconds)

    def _hold(self, name: str, retry_after: float) -> None:
        """Hold the agent's new calls until the server's Retry-After; said once per back-off."""
        throttle = self.gate.hold(min(max(retry_after, 0.0), MAX_RETRY_AFTER_S))
        until = now_iso(throttle.until)
        if throttle.lengthened:  # so `ps` shows the end in force, not the first one
            self.proc.write("throttled_until", until)
        if throttle.started:
            self.log.warning(
                "throttled", msg=name, until=until, detail="new model calls wait until then"
            )

    def _settling(self, name: str) -> contextlib.AbstractContextManager[None]:
        return self.worker.settling(name) if self.worker else contextlib.nullcontext()

    def interrupted(self, name: str, signum: int) -> None:
        """Fail the claimed message `name` whose answer a signal cut short: it goes to
        `.failed/` with `error_type: "interrupted"` and a failure reply, like any other
        failure, instead of waiting in the inbox for whoever starts next."""
        msg = read_claimed(self.queue, name, self.log)
        if not isinstance(msg, Message):
            return
        what = signal.Signals(signum).name
        exc = ProviderError(
            f"interrupted by {what} before the answer was complete",
            error_type="interrupted",
            transient=False,
        )
        self._fail(msg, name, exc, attempts=1)

    def _put_back(self, name: str) -> None:
        if self.worker is not None:
            self.worker.put_back(name)
        elif self.queue.put_back(name):
            self.log.info("put back", msg=name, detail="stopped before the answer was complete")

    def _fail(
        self,
        msg: Message,
        name: str,
        exc: ProviderError,
        *,
        attempts: int,
        answer: Answer | None = None,
    ) -> None:
        """Fail the message; the tokens of the calls that were answered still count."""
        text = f"{self.proc.name} could not answer: {exc}"
        reply = msg.reply(self.proc.name, text, parent_filename=name, error=True)
        self.queue.fail(
            name, reply, error_type=exc.error_type, last_error=str(exc), attempts=attempts
        )
        tokens_in = answer.input_tokens if answer is not None else None
        tokens_out = answer.output_tokens if answer is not None else None
        self._count(tokens_in, tokens_out)
        self.log.error(
            "failed",
            msg=name,
            model=self.model,
            error_type=exc.error_type,
            error=str(exc),
            attempts=attempts,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
        )
        self._done(Outcome(name, reply=reply, failed=True, error=str(exc)))

    def _remember(self, name: str, answer: Answer) -> None:
        """Keep the turns in the session's context and append them to the conversation
        file: one line per turn, and one `role: tool` line per tool result."""
        if self.context is not None:
            self.context.extend(answer.turns)
        self._record(name, answer)

    def _record(self, name: str, answer: Answer) -> None:
        """Append the answer's turns to today's conversation file."""
        path = f"{self.proc.conversations}/{today()}.ndjson"
        ts = int(time.time() * 1000)
        lines = [
            _record_line({**record, "ts": ts, "msg": name})
            for turn in answer.turns
            for record in _records(turn)
        ]
        with self._record_lock:
            try:
                self._conversation.append(path, "\n".join(lines))
            except FileNotFoundError:
                atomic.make_private_dir(self.proc.conversations)
                self._conversation.append(path, "\n".join(lines))


def _records(turn: Turn) -> list[dict[str, object]]:
    """A turn as conversation-file records (docs/tools.md shows the shape)."""
    if turn.tool_results:
        return [
            {"role": "tool", "content": r.content, "tool": r.name, "call_id": r.call_id}
            | ({"error": True} if r.is_error else {})
            for r in turn.tool_results
        ]
    record: dict[str, object] = {"role": turn.role, "content": turn.content}
    if turn.reasoning:
        record["reasoning"] = turn.reasoning
    if turn.tool_calls:
        record["tool_calls"] = [
            {"id": c.id, "name": c.name, "arguments": c.arguments} for c in turn.tool_calls
        ]
    return [record]


def _discard(text: str) -> None:
    return None
