"""The table of loom's commands and the root's own help text, with no typer or click in
it: the root group builds commands from it (loom.cli.root), and `loom --help` is printed
from it without either (loom.cli.fast)."""

from __future__ import annotations

# The root's help paragraphs: typer's `help=` in loom.cli.root, and what loom.cli.fast
# prints under Usage.
ROOT_HELP = (
    "A transparent agent runtime and pipe-and-operator stream engine.\n\n"
    "Example: echo 'hello' | loom agent start a --model echo --stdin"
)


class Entry:
    """Where a command of a lazy group lives (`loom.cli.MODULE`, attribute `attr`: a
    typer app for a group, a function for a command) and the line its group's help
    lists for it; with `short`, that line is also the command's own short help. With
    `paired`, the command takes `-o KEY VALUE` pairs (its class is _common.PairedOptions).
    """

    # A plain class, not a NamedTuple: `loom --help` prints this table without importing
    # typing (loom.cli.fast).
    __slots__ = ("module", "attr", "help", "short", "paired")

    def __init__(
        self, module: str, attr: str, help: str, short: bool = False, paired: bool = False
    ) -> None:
        self.module, self.attr, self.help = module, attr, help
        self.short, self.paired = short, paired


# name → (module, attribute, the line `loom --help` shows for it, short help or None).
# A group's attribute is its typer app; a command's is its function. The listed line is
# the command's short help or the first sentence of its docstring; a test keeps this
# table and the commands it names in step (tests/test_cli_help.py).
ASK_HELP = "Ask a model one question and stream its answer to stdout."
MODELS_HELP = "List the models each configured provider offers, one `provider/model` a line."
DEMO_HELP = "Run the triage weave shipped with loom on the echo model: no network, no key."
COMMANDS: dict[str, Entry] = {
    "agent": Entry("agent", "app", "Start, list, stop and inspect agents."),
    "ask": Entry("ask", "ask", ASK_HELP, paired=True),
    "cluster": Entry("cluster", "app", "Inspect the hosts of a weave with `cluster:`."),
    "demo": Entry("demo", "demo", DEMO_HELP),
    "down": Entry(
        "weave", "down", "Stop every agent and pipe this project started; all state stays on disk."
    ),
    "gc": Entry(
        "gc", "gc", "Archive old processed and delivered messages, compress and delete old logs."
    ),
    "graph": Entry(
        "weave",
        "graph",
        "Draw the weave: agents, pipes, and edges labelled with pipes and conditions.",
    ),
    "logs": Entry(
        "lifecycle",
        "logs",
        "Print the logs of every process of the weave at once, each line after its name.",
    ),
    "models": Entry("models", "models", MODELS_HELP),
    "pipe": Entry("pipe", "app", "Run and manage pipes."),
    "pipes": Entry(
        "pipe", "pipes", "List pipe definitions (stored and catalog) and running pipe instances."
    ),
    "restart": Entry(
        "lifecycle",
        "restart",
        "Stop an agent or pipe instance, then start it again with its stored settings.",
    ),
    "rm": Entry(
        "lifecycle",
        "rm",
        "Stop an agent or pipe instance and delete its folder: queue, replies, logs, state.",
    ),
    "route": Entry(
        "route", "route", "Route the messages SRC writes to its outbox into another inbox."
    ),
    "routes": Entry("route", "routes", "List routes: FROM PIPE TO WHEN FORWARDED LAST HELD."),
    "send": Entry(
        "send",
        "send",
        "Send a message to an agent or pipe; prints the path of the new message file.",
    ),
    "stats": Entry(
        "stats",
        "stats",
        "Show message counts, restarts, queue depths and timings per process and route.",
        short=True,
    ),
    "supervisor": Entry("supervisor", "app", "Run, inspect, stop or restart the supervisor."),
    "test": Entry(
        "test_cmd",
        "test",
        "Run pipe tests: every *.test.yml under PATH, one line per test, then a summary.",
    ),
    "tools": Entry("tools", "tools", "List the tools agents can use: NAME ORIGIN DESCRIPTION."),
    "trace": Entry(
        "trace",
        "trace",
        "Show the lineage of a message as a tree: its ancestors and descendants.",
        short=True,
    ),
    "unroute": Entry(
        "route", "unroute", "Remove a route; messages already delivered stay where they are."
    ),
    "up": Entry("weave", "up", "Start the weave, restarting only what changed.", short=True),
    "validate": Entry(
        "weave",
        "validate",
        "Check weave files and standalone pipe files, like a linter: print every problem as "
        "FILE:LINE:COL: message, and `FILE: ok (...)` for each file without one.",
    ),
}
