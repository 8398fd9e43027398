"""`loom agent ...`: start, list, stop and read the logs of agents (and pipe instances)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from loom.cli._common import (
    FollowOption,
    JsonLogsOption,
    LevelOption,
    OptionPairs,
    PairedOptions,
    die,
    handle_errors,
    option_pairs,
)

app = typer.Typer(help="Start, list, stop and inspect agents.", no_args_is_help=True)


@app.command(cls=PairedOptions)
@handle_errors
def start(
    name: Annotated[str, typer.Argument(help="Agent name: lowercase letters, digits, '-'.")],
    model: Annotated[
        str, typer.Option("--model", "-m", help="echo, ollama/M, openai/M, anthropic/M, ...")
    ],
    stdin: Annotated[
        bool, typer.Option("--stdin", help="Answer all of stdin as one message, then exit.")
    ] = False,
    serve: Annotated[
        bool,
        typer.Option("--serve", help="Serve the inbox in the foreground, whatever stdin is."),
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
    concurrency: Annotated[
        int,
        typer.Option("--concurrency", "-c", help="Messages answered at once, 1 to 256 (detached)."),
    ] = 1,
    rate: Annotated[
        str | None,
        typer.Option("--rate", help="At most this many model calls: 60/m, 10/s, 500/h."),
    ] = None,
    schema: Annotated[
        str | None,
        typer.Option("--schema", help="Replies are JSON valid against this schema (FILE or JSON)."),
    ] = None,
    option: OptionPairs = None,
    input_mode: Annotated[
        str,
        typer.Option("--input", help="What the model reads of a batch: bodies or envelopes."),
    ] = "bodies",
    resume: Annotated[
        bool,
        typer.Option(
            "--continue",
            help="Start with the agent's recent conversation as context "
            "(no short form: -c is --concurrency).",
        ),
    ] = False,
) -> None:
    """Start agent NAME in the foreground as a Unix filter, or serve its inbox.

    With --stdin, all of stdin is one message: the reply streams to stdout and the
    command exits (non-zero when the model call failed; 130 on Ctrl-C, 143 on SIGTERM,
    the message then in .failed/ as interrupted). Stdin that is a pipe or a file is
    answered that way without --stdin too, and so is --prompt without a terminal.
    On a terminal (without --serve) it is a chat: each line typed is a message, with
    line editing and history; exit, quit or Ctrl-D end it, !multi ... !end sends several
    lines, Ctrl-C stops a reply; the chat does not serve the inbox. Otherwise, or with
    --serve, the agent serves its inbox until Ctrl-C, printing each reply.

    --continue starts with the agent's recent conversation as context (it has no short
    form: -c is --concurrency).

    Started again with -d while it runs: with the same settings it is left alone
    ("already running", exit 0); with other settings it is restarted with them.

    A detached agent answers up to --concurrency messages at once (replies may then
    complete out of order); --rate spaces its model calls evenly, however many are in
    flight.

    With --schema, every reply is JSON valid against the schema (a file, or the JSON
    itself); an answer that does not fit is corrected once, then fails with
    error_type "schema". The reply prints once it is valid, not as it streams.

    -o KEY VALUE (repeatable) passes a model option such as temperature in the
    provider's own field; an option the provider does not know is refused.

    A batch from a window or buffer reaches the model as one `[sender] body` item per
    message; --input envelopes gives it the JSON list of envelopes instead.

    Example: echo "summarise this" | loom agent start s --model echo --stdin

    Example: loom agent start s --model echo --serve < /dev/null &

    Example: loom agent start chat --model openai/gpt-4o-mini --continue

    Example: loom agent start bulk --model ollama/qwen3:8b -d --concurrency 4 --rate 60/m

    Example: loom agent start triage --model openai/gpt-4o-mini --schema label.json -d

    Example: loom agent start w --model ollama/qwen3:8b -o temperature 0.2 -o num_ctx 8192 -d
    """
    from loom.agent import agents, foreground
    from loom.providers.json_schema import load_schema
    from loom.providers.options import parse_pairs
    from loom.store.files import PROMPT_LIMIT, read_input

    if system is not None and system_file is not None:
        raise die("give --system or --system-file, not both", 2)
    if system_file is not None:
        label = f"--system-file {system_file}"
        system = read_input(
            system_file, sys.stdin.buffer, PROMPT_LIMIT, "--system-file", label=label
        )
    spec = agents.AgentSpec(
        name,
        model,
        system=system,
        env=agents.parse_env_pairs(env or []),
        restart=restart,
        tools=None if tools is None else agents.parse_tool_names(tools),
        concurrency=concurrency,
        rate=rate,
        schema=None if schema is None else load_schema(schema),
        options=parse_pairs(option_pairs(option)),
        input=input_mode,
    )
    if concurrency > 1 and not detach:
        raise die(
            "--concurrency needs --detach: in the foreground an agent answers one "
            "message at a time",
            2,
        )
    if stdin and serve:
        raise die("give --stdin (answer stdin, then exit) or --serve, not both", 2)
    if detach:
        if stdin or envelope or prompt or serve:
            raise die("--detach runs in the background: use 'loom send' instead of --stdin", 2)
        if resume:
            raise die("--continue is for the foreground: a detached agent keeps no context", 2)
        from loom.supervisor import control

        started = control.start_detached(spec)
        if started.already:
            print(f"{name} is already running (pid {started.pid})", file=sys.stderr)
            return
        pid = f" (pid {started.pid})" if started.pid else ""
        if started.changed:
            print(f"restarted {name}{pid}: {', '.join(started.changed)} changed")
        else:
            print(f"{name} {started.status}{pid}")
        return
    once = foreground.answers_once(once=stdin, serve=serve, prompt=prompt, stdin=sys.stdin)
    code = foreground.run(
        spec,
        once=once,
        prompt=prompt,
        envelope=envelope,
        stdin=sys.stdin,
        out=sys.stdout,
        err=sys.stderr,
        resume=resume,
        serve=serve,
    )
    if code:
        raise typer.Exit(code)


@app.command(hidden=True)
@handle_errors
def serve(name: Annotated[str, typer.Argument(help="Agent name.")]) -> None:
    """Serve a detached agent's inbox (what the supervisor runs).

    Example: loom agent serve summarizer
    """
    from loom.agent import agents

    agents.serve(agents.detached_session(name), [])


@app.command()
@handle_errors
def ps(
    all_: Annotated[bool, typer.Option("--all", "-a", help="Include stopped and dead.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array for scripts.")] = False,
    project: Annotated[
        str | None,
        typer.Option("--project", "-p", help="Only the processes this project started."),
    ] = None,
) -> None:
    """List agents and pipe instances: NAME STATUS MODEL IN FLIGHT RESTARTS UPTIME PROJECT.

    A process that died without saying so (its pid is gone) shows as `error`. IN
    FLIGHT is the messages being answered now out of the agent's concurrency; an
    agent holding its calls after a 429 shows `throttled until T` in STATUS. PROJECT
    is the loom.yml's project that started it (`loom up`), `-` when started by hand.
    --json also has each agent's tokens: `input_tokens`, `output_tokens` and, per
    model, `tokens_by_model`.

    Example: loom agent ps --all --project triage
    """
    from loom.cli import fast

    print(fast.ps(all_, as_json, project))


@app.command()
@handle_errors
def stop(name: Annotated[str, typer.Argument(help="Agent or pipe instance name.")]) -> None:
    """Stop an agent or pipe instance: it finishes or puts back its current message.

    Prints what it stopped (`stopped agent NAME (pid N)`).

    Example: loom agent stop summarizer
    """
    from loom.store import processes

    result = processes.stop(name)
    if not result.was_running:
        print(f"{result.kind} {name} was not running; marked stopped", file=sys.stderr)
    elif not result.exited:
        raise die(
            f"{result.kind} {name} (pid {result.pid}) did not exit within 10 s of SIGTERM; "
            "it is still finishing",
            1,
        )
    else:
        print(f"stopped {result.kind} {name} (pid {result.pid})")


@app.command()
@handle_errors
def logs(
    name: Annotated[str, typer.Argument(help="Agent or pipe instance name.")],
    follow: FollowOption = False,
    lines: Annotated[int, typer.Option("--lines", "-n", min=0, help="How many recent lines.")] = 20,
    as_json: JsonLogsOption = False,
    level: LevelOption = None,
) -> None:
    """Print the recent log of an agent or pipe instance, optionally following it.

    --follow keeps printing new lines, also across the switch to the next day's file.
    --level warning shows warnings and errors only.

    Example: loom agent logs summarizer -n 50 --level warning
    """
    from loom.store import processes
    from loom.store.logs import LEVELS, severity

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


@app.command()
@handle_errors
def history(
    name: Annotated[str, typer.Argument(help="Agent name.")],
    count: Annotated[int, typer.Option("--lines", "-n", min=0, help="How many recent turns.")] = 10,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per turn (NDJSON), full texts.")
    ] = False,
) -> None:
    """Show an agent's past turns, newest last: TIME MSG FROM PROMPT REPLY MODEL IN OUT
    TIME-MS STATUS.

    Each turn is one message the agent answered (`ok`) or failed (`failed`, the error in
    place of the reply), with the tokens it cost and how long it took. The prompt and
    reply are cut to one line here; --json has them whole, one object per line.

    Example: loom agent history summarizer -n 3

    Example: loom agent history summarizer --json | jq -r .reply
    """
    from loom.cli._text import columns
    from loom.store import history as turns

    found = turns.history(name, count)
    if as_json:
        for turn in found:
            print(turns.dumps(turn))
        return
    if not found:
        return
    table = [("TIME", "MSG", "FROM", "PROMPT", "REPLY", "MODEL", "IN", "OUT", "MS", "STATUS")]
    for t in found:
        table.append(
            (
                t.ts[:19].replace("T", " "),
                t.msg,
                t.sender or "-",
                turns.one_line(t.prompt),
                turns.one_line(t.error if t.status == "failed" else t.reply),
                t.model or "-",
                "-" if t.input_tokens is None else str(t.input_tokens),
                "-" if t.output_tokens is None else str(t.output_tokens),
                "-" if t.duration_ms is None else str(round(t.duration_ms)),
                t.status,
            )
        )
    print(columns(table))
