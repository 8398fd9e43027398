"""A chat on a terminal: `loom agent start NAME --model M` with stdin a terminal (SPEC 5).

Each message typed is answered in turn and the reply streams back; the session keeps
its context. Lines are edited and recalled with the standard library's readline (the
history is kept in the agent's folder), `!multi` ... `!end` or a paste makes one message
of several lines, and Ctrl-C stops the reply in hand rather than the session.
"""

from __future__ import annotations

import os
import signal
import stat
from pathlib import Path
from types import ModuleType
from typing import TextIO

from loom.agent.agents import Session
from loom.agent.handover import CHATTING
from loom.store import atomic
from loom.store.message import Message, new_message
from loom.store.worker import Cancelled, Stopping

HISTORY_FILE = "chat_history"
# A history file larger than this is not read (it is rewritten at the end).
HISTORY_BYTES = 4 * 1024 * 1024
# Lines kept in the history file; older ones are dropped when it is saved.
HISTORY_LENGTH = 1000
EXIT_WORDS = ("exit", "quit")
MULTI_START = "!multi"
MULTI_END = "!end"
PROMPT = "> "
MORE_PROMPT = "... "
# Readline variables for the session. A terminal that is told `\e[?2004h` (readline
# sends it while it reads a line) marks a paste, so a pasted text of several lines is
# inserted whole and becomes one message when Enter is pressed, not one per line.
READLINE_SETTINGS = ("set enable-bracketed-paste on",)


def banner(model: str, agent: str, earlier_turns: int | None) -> str:
    """The one line a terminal session starts with (on stderr)."""
    continued = "" if earlier_turns is None else f", {earlier_turns} earlier turns"
    return (
        f"loom: chat with {model} (agent {agent}{continued}). exit, quit or Ctrl-D "
        f"ends it; {MULTI_START} ... {MULTI_END} for several lines."
    )


class _End(Exception):
    """The user ended the session; `code` is its exit code."""

    def __init__(self, code: int) -> None:
        self.code = code


class LineReader:
    """Reads what the user types: through readline when stdin and stdout are the
    terminal (editing, history, bracketed paste), else line by line from stdin with the
    prompt on `prompt_to`."""

    def __init__(self, stdin: TextIO, stdout: TextIO, prompt_to: TextIO, history: Path) -> None:
        self.stdin = stdin
        self.prompt_to = prompt_to
        self.history = history
        self.readline = _readline() if stdin.isatty() and stdout.isatty() else None
        if self.readline is not None:
            for setting in READLINE_SETTINGS:
                self.readline.parse_and_bind(setting)
            # Added by hand: exit words, `!multi` blocks and pastes are not history lines.
            self.readline.set_auto_history(False)
            self.readline.set_history_length(HISTORY_LENGTH)
            try:
                # readline opens what it is given: a FIFO there would hang the session, a
                # link would read another file, a huge file would all be read.
                found = os.lstat(history)
                if stat.S_ISREG(found.st_mode) and found.st_size <= HISTORY_BYTES:
                    self.readline.read_history_file(str(history))
            except OSError:
                pass  # none yet, or unreadable: the session starts without one

    def read(self, prompt: str) -> str:
        """One line (without its newline); EOFError at Ctrl-D or end of input."""
        if self.readline is not None:
            return input(prompt)
        print(prompt, end="", file=self.prompt_to, flush=True)
        line = self.stdin.readline()
        if not line:
            raise EOFError
        return line.rstrip("\n")

    def typed(self) -> str:
        """What is on the line being edited (after a Ctrl-C); "" without readline."""
        return self.readline.get_line_buffer() if self.readline is not None else ""

    def dropped(self, prompt: str, typed: str) -> str:
        """What shows that Ctrl-C dropped `typed`: `^C` after it, as a shell shows it.
        Readline leaves the cursor at the start of the line it drew; a text that may
        span rows is not drawn again."""
        if self.readline is None:
            return "^C"
        if "\n" in typed or len(prompt) + len(typed) > 60:
            return "\n^C"
        return f"\r{prompt}{typed}^C"

    def remember(self, text: str) -> None:
        if self.readline is not None and text.strip():
            self.readline.add_history(text)

    def save(self) -> None:
        """Write the history file (mode 0600, like every file loom writes): the last
        HISTORY_LENGTH lines. An entry of several lines (a paste) stays in this session
        only: the file holds one entry per line."""
        if self.readline is None:
            return
        rl = self.readline
        entries = [rl.get_history_item(i) for i in range(1, rl.get_current_history_length() + 1)]
        lines = [e for e in entries if e and "\n" not in e][-HISTORY_LENGTH:]
        try:
            atomic.write_text(self.history, "".join(f"{line}\n" for line in lines))
        except OSError:
            pass  # a history is a convenience: a full disk must not fail the session


def _readline() -> ModuleType | None:
    """The readline module, imported only for a terminal session: importing it sets up
    the terminal, which a filter's stdout must never see."""
    try:
        import readline
    except ImportError:  # a Python built without it: plain lines still work
        return None
    return readline


def converse(
    session: Session,
    initial: list[Message],
    *,
    stdin: TextIO,
    stdout: TextIO,
    err: TextIO,
    greeting: str | None = None,
) -> int:
    """Chat on the terminal until the user ends it; the exit code.

    0 for exit, quit, Ctrl-D or end of input; 130 for a second Ctrl-C at the prompt (the
    first clears the line); 128 + N for signal N (SIGTERM: 143). Ctrl-C while a reply
    streams stops it: the message is failed as interrupted (`.failed/`) and neither it
    nor the partial reply is kept in the context or the conversation file.
    """
    worker = session.worker
    worker.install_signals()
    worker.cancel_on_sigint = True
    worker.mark_started()
    session.proc.write(CHATTING, str(os.getpid()))  # `--stdin` elsewhere is refused
    reader = LineReader(stdin, stdout, err, session.proc.path / HISTORY_FILE)
    if greeting is not None:
        print(greeting, file=err, flush=True)
    code = 0
    try:
        worker.recover()
        for msg in initial:
            _turn(session, msg, err)
        while not worker.stopping:
            text = _next_message(session, reader, err)
            if text is not None:
                _turn(session, new_message("user", text), err)
    except _End as end:
        code = end.code
    except Stopping:
        pass
    finally:
        reader.save()
        session.proc.forget(CHATTING)
        worker.mark_stopped()
    if worker.signum is not None:
        code = 128 + worker.signum  # as the shell reports a killed command
    return code


def _next_message(session: Session, reader: LineReader, err: TextIO) -> str | None:
    """The next message typed; None when there is none to send (an empty line, a
    cleared one); _End when the user ends the session."""
    interrupts = 0
    while True:
        try:
            with session.worker.interruptible():
                line = reader.read(PROMPT)
        except Cancelled:
            # As a shell does: Ctrl-C drops what was typed; a second one in a row on an
            # empty line ends the session.
            typed = reader.typed()
            interrupts = 0 if typed else interrupts + 1
            if interrupts >= 2:
                print(file=err, flush=True)
                raise _End(128 + signal.SIGINT) from None
            hint = "" if typed else " (Ctrl-C again or Ctrl-D to end the session)"
            print(reader.dropped(PROMPT, typed) + hint, file=err, flush=True)
            continue
        except EOFError:
            print(file=err, flush=True)  # the prompt's line ends before the shell's
            raise _End(0) from None
        if line.strip() in EXIT_WORDS:
            raise _End(0)
        if line.strip() == MULTI_START:
            return _multi(session, reader, err)
        if not line.strip():
            return None
        reader.remember(line)
        return line.rstrip("\n")  # a paste's last newline is framing, as in --stdin


def _multi(session: Session, reader: LineReader, err: TextIO) -> str | None:
    """The lines up to `!end` (or Ctrl-D) as one message; Ctrl-C drops them."""
    print(f"(several lines: end with {MULTI_END} or Ctrl-D; Ctrl-C drops them)", file=err)
    lines: list[str] = []
    while True:
        try:
            with session.worker.interruptible():
                line = reader.read(MORE_PROMPT)
        except Cancelled:
            print(reader.dropped(MORE_PROMPT, reader.typed()) + " (dropped)", file=err, flush=True)
            return None
        except EOFError:
            print(file=err, flush=True)
            break
        if line.strip() == MULTI_END:
            break
        lines.append(line)
    text = "\n".join(lines)
    return text if text.strip() else None


def _turn(session: Session, msg: Message, err: TextIO) -> None:
    """Answer one message; Ctrl-C meanwhile fails it as interrupted."""
    session.queue.send(msg)
    if session.queue.claim(msg.filename) is None:
        return
    session.proc.set_status("running")
    try:
        session.runner.handle(msg.filename)
    except Cancelled:
        print(file=err, flush=True)  # off the partial reply's line
        # The runner put the message back; nobody waits for its answer now.
        if session.queue.claim(msg.filename) is not None:
            session.runner.interrupted(msg.filename, signal.SIGINT)
    finally:
        session.proc.set_status("idle")
