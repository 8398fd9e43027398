"""`loom agent ...`: start, list, stop and read the logs of agents (and pipe instances)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from loom.cli._common import columns, die, handle_errors

if TYPE_CHECKING:
    from loom.home import ProcessDir
    from loom.message import Message

app = typer.Typer(help="Start, list, stop and inspect agents.", no_args_is_help=True)


@app.command()
@handle_errors
def start(
    name: Annotated[str, typer.Argument(help="Agent name: lowercase letters, digits, '-'.")],
    model: Annotated[
        str, typer.Option("--model", "-m", help="echo, ollama/M, openai/M, anthropic/M, ...")
    ],
    stdin: Annotated[
        bool, typer.Option("--stdin", help="Answer all of stdin as one message, then exit.")
    ] = False,
    prompt: Annotated[
        str | None, typer.Option("--prompt", "-p", help="An initial message (before stdin).")
    ] = None,
    system: Annotated[str | None, typer.Option("--system", help="The system prompt.")] = None,
    system_file: Annotated[
        Path | None, typer.Option("--system-file", help="Read the system prompt from a file.")
    ] = None,
    env: Annotated[
        list[str] | None, typer.Option("--env", help="KEY=VALUE for the runner (repeatable).")
    ] = None,
    restart: Annotated[
        str, typer.Option("--restart", help="always, on-failure or never (detached).")
    ] = "always",
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Run under the supervisor in the background.")
    ] = False,
    envelope: Annotated[
        bool, typer.Option("--envelope", help="Print replies as JSON message envelopes.")
    ] = False,
    tools: Annotated[
        str | None,
        typer.Option("--tools", help="Only these tools, comma-separated ('' for none)."),
    ] = None,
) -> None:
    """Start agent NAME in the foreground as a Unix filter, or serve its inbox.

    With --stdin, all of stdin is one message: the reply streams to stdout and the
    command exits (non-zero when the model call failed). Without it, the agent serves
    its inbox until Ctrl-C, printing each reply; on a terminal, each line typed is a
    message.

    Example: echo "summarise this" | loom agent start s --model echo --stdin
    """
    from loom import agents
    from loom.files import MESSAGE_BODY_LIMIT, PROMPT_LIMIT, read_bounded_text, read_stream_bounded
    from loom.home import AlreadyServed
    from loom.message import new_message
    from loom.runner import Outcome

    if system is not None and system_file is not None:
        raise die("give --system or --system-file, not both", 2)
    if system_file is not None:
        try:
            system = read_bounded_text(system_file, PROMPT_LIMIT, "--system-file")
        except OSError as exc:
            raise die(f"cannot read --system-file {system_file}: {exc.strerror}", 2) from None
    spec = agents.AgentSpec(
        name,
        model,
        system=system,
        env=agents.parse_env_pairs(env or []),
        restart=restart,
        tools=None if tools is None else agents.parse_tool_names(tools),
    )
    if detach:
        if stdin or envelope or prompt:
            raise die("--detach runs in the background: use 'loom send' instead of --stdin", 2)
        from loom.supervisor import control

        status, pid = control.start_detached(spec)
        print(f"{name} {status} (pid {pid})" if pid else f"{name} {status}")
        return
    out = sys.stdout

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

    if stdin:
        data = read_stream_bounded(sys.stdin.buffer, MESSAGE_BODY_LIMIT, "stdin")
        messages = agents.stdin_messages(data, prompt)
        try:
            session = agents.open_session(spec, sink=None if envelope else stream, foreground=True)
        except AlreadyServed as served:
            # Another process owns the queue: it answers, this command prints the reply.
            _print_replies(served.proc, model, messages, envelope)
            return
        session.runner.on_done = done
        outcomes = agents.answer(session, messages)
        failed = [o for o in outcomes if o.failed]
        if failed or len(outcomes) < len(messages):
            for o in failed:
                print(f"loom: agent {name}: {o.error}", file=sys.stderr)
            raise typer.Exit(1)
        return
    initial = [new_message("cli", prompt)] if prompt else []
    interactive = sys.stdin.isatty()
    session = agents.open_session(
        spec, sink=None if envelope else stream, foreground=True, interactive=interactive
    )
    session.runner.on_done = done
    if interactive:
        agents.converse(session, sys.stdin, initial, prompt=sys.stderr)
    else:
        agents.serve(session, initial)


def _print_replies(proc: ProcessDir, model: str, messages: list[Message], envelope: bool) -> None:
    """Hand `messages` to the owner of `proc`'s queue; print each reply as --stdin does."""
    from loom import handover

    failed = False
    for reply in handover.ask(proc, model, messages):
        failed = failed or reply.error
        if envelope:
            print(reply.to_json(), flush=True)
        elif reply.error:
            print(reply.body, file=sys.stderr, flush=True)
        else:
            print(reply.body, end="" if reply.body.endswith("\n") else "\n", flush=True)
    if failed:
        raise typer.Exit(1)


@app.command(hidden=True)
@handle_errors
def serve(name: Annotated[str, typer.Argument(help="Agent name.")]) -> None:
    """Serve a detached agent's inbox (what the supervisor runs).

    Example: loom agent serve summarizer
    """
    from loom import agents

    agents.serve(agents.detached_session(name), [])


@app.command()
@handle_errors
def ps(
    all_: Annotated[bool, typer.Option("--all", "-a", help="Include stopped and dead.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array for scripts.")] = False,
) -> None:
    """List agents and pipe instances: NAME STATUS MODEL RESTARTS UPTIME.

    A process that died without saying so (its pid is gone) shows as `error`.

    Example: loom agent ps --all
    """
    from loom import processes

    found = processes.rows(include_all=all_)
    if as_json:
        print(json.dumps([r.to_json() for r in found], indent=None))
        return
    table = [("NAME", "STATUS", "MODEL", "RESTARTS", "UPTIME")]
    for r in found:
        uptime = processes.format_uptime(r.uptime_s)
        table.append((r.name, r.status, r.model, str(r.restarts), uptime))
    print(columns(table))


@app.command()
@handle_errors
def stop(name: Annotated[str, typer.Argument(help="Agent or pipe instance name.")]) -> None:
    """Stop an agent or pipe instance: it finishes or puts back its current message.

    Example: loom agent stop summarizer
    """
    from loom import processes

    result = processes.stop(name)
    if not result.was_running:
        print(f"{name} was not running; marked stopped", file=sys.stderr)
    elif not result.exited:
        raise die(f"{name} did not exit within 10 s of SIGTERM; it is still finishing", 1)


@app.command()
@handle_errors
def logs(
    name: Annotated[str, typer.Argument(help="Agent or pipe instance name.")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines.")
    ] = False,
    lines: Annotated[int, typer.Option("--lines", "-n", help="How many recent lines.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Raw NDJSON log records.")] = False,
    level: Annotated[
        str | None,
        typer.Option(
            "--level", "-l", help="Only this level and above: debug, info, warning, error."
        ),
    ] = None,
) -> None:
    """Print the recent log of an agent or pipe instance, optionally following it.

    --follow keeps printing new lines, also across the switch to the next day's file.
    --level warning shows warnings and errors only.

    Example: loom agent logs summarizer -n 50 --level warning
    """
    from loom import processes
    from loom.logs import LEVELS, severity

    if level is not None and severity(level) is None:
        raise die(f"unknown level '{level}'; use one of {', '.join(LEVELS)}", 2)
    render = (lambda line: line) if as_json else processes.render_log_line
    recent, position = processes.tail(name, lines, level)
    for line in recent:
        print(render(line))
    if follow:
        sys.stdout.flush()
        for line in processes.follow(name, since=position):
            if processes.at_least(line, level):
                print(render(line), flush=True)
