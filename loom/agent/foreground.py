"""`loom agent start` in the foreground: answer stdin once, converse on a terminal, or
serve the inbox, printing each reply; the exit code says whether every answer came.

The detached start goes through the supervisor and is not here.
"""

from __future__ import annotations

import io
import os
import stat
from typing import TextIO

from loom.agent import agents, chat, conversation, handover
from loom.agent.runner import Outcome
from loom.store import home as homes
from loom.store.files import MESSAGE_BODY_LIMIT, read_stream_bounded
from loom.store.home import AlreadyServed, ProcessDir
from loom.store.message import Message, new_message


def stdin_is_data(stdin: TextIO) -> bool:
    """Whether stdin is a pipe or a file (something to answer), not a terminal or a
    device such as /dev/null (what a service manager or `nohup` gives)."""
    try:
        mode = os.fstat(stdin.fileno()).st_mode
    except (OSError, ValueError, io.UnsupportedOperation):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISREG(mode)


def answers_once(*, once: bool, serve: bool, prompt: str | None, stdin: TextIO) -> bool:
    """Whether `loom agent start` answers and exits rather than serving the inbox.

    `--stdin` says so, `--serve` says not; asked neither, stdin that is a pipe or a file
    is answered (`echo hi | loom agent start a ...`), and so is a `--prompt` given
    without a terminal to converse on.
    """
    if once or serve:
        return once
    return stdin_is_data(stdin) or (prompt is not None and not stdin.isatty())


def run(
    spec: agents.AgentSpec,
    *,
    once: bool,
    prompt: str | None,
    envelope: bool,
    stdin: TextIO,
    out: TextIO,
    err: TextIO,
    resume: bool = False,
    serve: bool = False,
) -> int:
    """Run agent `spec` in this process until its input ends; the exit code.

    `once` (--stdin): all of `stdin` is one message (after `prompt`, if any); the reply
    streams to `out` and the result is 1 when a model call failed or a message went
    unanswered, each failure one `loom: agent NAME: ...` line on `err`. When another
    process already serves the agent's queue, it answers and its replies print here.
    Otherwise the agent serves its inbox until interrupted, a terminal's lines being
    messages too (the prompt for them on `err`). `envelope` prints each reply as its
    JSON envelope instead of streaming the text.

    On a terminal it is a chat instead (loom.agent.chat), which does not serve the
    inbox; `serve` (--serve) serves it whatever stdin is. `resume` (--continue) starts
    with the agent's recent conversation as context (as `loom ask --agent` does).
    """

    def stream(text: str) -> None:
        out.write(text)
        out.flush()

    def done(outcome: Outcome) -> None:
        if envelope:
            if outcome.reply is not None:
                out.write(outcome.reply.to_json() + "\n")
        elif outcome.reply is not None and not outcome.failed:
            out.write("\n" if not outcome.reply.body.endswith("\n") else "")
        out.flush()

    sink = None if envelope else stream
    earlier = conversation.recent_turns(homes.agent(spec.name)) if resume else None
    if once:
        data = read_stream_bounded(stdin.buffer, MESSAGE_BODY_LIMIT, "stdin")
        messages = agents.stdin_messages(data, prompt)
        try:
            session = agents.open_session(spec, sink=sink, foreground=True, earlier=earlier)
        except AlreadyServed as served:
            # Another process owns the queue: it answers, this command prints the reply.
            return _print_replies(served.proc, spec.model, messages, envelope, out, err)
        session.runner.on_done = done
        outcomes = agents.answer(session, messages)
        failed = [o for o in outcomes if o.failed]
        for o in failed:
            print(f"loom: agent {spec.name}: {o.error}", file=err)
        if session.worker.signum is not None:
            return 128 + session.worker.signum  # as the shell reports a killed command
        return 1 if failed or len(outcomes) < len(messages) else 0
    initial = [new_message("cli", prompt)] if prompt else []
    interactive = stdin.isatty() and not serve
    session = agents.open_session(
        spec, sink=sink, foreground=True, interactive=interactive, earlier=earlier
    )
    session.runner.on_done = done
    if interactive:
        greeting = None
        if err.isatty():
            greeting = chat.banner(spec.model, spec.name, None if earlier is None else len(earlier))
        return chat.converse(session, initial, stdin=stdin, stdout=out, err=err, greeting=greeting)
    agents.serve(session, initial)
    return 0


def _print_replies(
    proc: ProcessDir,
    model: str,
    messages: list[Message],
    envelope: bool,
    out: TextIO,
    err: TextIO,
) -> int:
    """Hand `messages` to the owner of `proc`'s queue; print each reply as --stdin does."""
    failed = False
    for reply in handover.ask(proc, model, messages):
        failed = failed or reply.error
        if envelope:
            print(reply.to_json(), file=out, flush=True)
        elif reply.error:
            print(reply.body, file=err, flush=True)
        else:
            print(reply.body, end="" if reply.body.endswith("\n") else "\n", file=out, flush=True)
    return 1 if failed else 0
