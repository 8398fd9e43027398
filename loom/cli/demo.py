"""`loom demo`: the triage weave shipped with loom, offline (README, docs/cli.md)."""

from __future__ import annotations

from loom.cli._common import handle_errors


@handle_errors
def demo() -> None:
    """Run the triage weave shipped with loom on the echo model: no network, no key.

    Starts the weave (intake, a routing pipe that fans out to notifier, researcher and
    archivist, a window that gathers their answers for digest) under the supervisor,
    sends three issues, prints what digest was given about each one, and stops what
    it started. It runs in LOOM_HOME when that is set, else in a new temporary folder,
    and says which; the files stay there to look at.

    Example: loom demo

    Example: LOOM_HOME=/tmp/loom-demo loom demo && ls /tmp/loom-demo/agents
    """
    from loom.weave import demo as triage_demo

    home = triage_demo.demo_home()
    digests = triage_demo.run(home, print)
    print("== what digest read about each issue: one batch, each item [sender] body")
    for body in digests:
        print(body)
        print()
    print(f"== every file is plain text: try  ls {home}/agents/digest")
