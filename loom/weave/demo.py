"""`loom demo`: the triage weave shipped with loom, on the echo model, offline.

It starts the weave of examples/triage (packaged under `loom/_catalog/examples/`) under
the supervisor, sends three issues to `intake`, waits for `digest`'s answer about each,
then stops what it started. Nothing leaves the machine: every agent runs on `echo`.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from loom import settings
from loom.api import send
from loom.errors import LoomError
from loom.pipeline.catalog import catalog_dir
from loom.store import home as homes
from loom.store.queue import list_messages, read_message
from loom.supervisor import lock, manage
from loom.weave import apply
from loom.weave import config as weave_config

ISSUES = (
    '{"title": "disk full on db1", "priority": "urgent"}',
    '{"title": "why is the cache slow?", "labels": ["research"]}',
    '{"title": "typo in the README"}',
)
DIGESTS_TIMEOUT_S = 30.0


def weave_file() -> Path:
    """The triage weave: package data in a wheel, examples/ in a checkout."""
    return catalog_dir("examples") / "triage" / "loom.yml"


def demo_home() -> Path:
    """LOOM_HOME when it is set, else a new temporary one (set for what the demo starts)."""
    if not os.environ.get(settings.HOME.name, "").strip():
        os.environ["LOOM_HOME"] = str(Path(tempfile.mkdtemp(prefix="loom-demo-")) / "loom")
    return homes.home()


def run(home: Path, say: Callable[[str], None], timeout: float = DIGESTS_TIMEOUT_S) -> list[str]:
    """Run the demo in `home` (the process's LOOM_HOME), saying each step; the bodies of
    digest's answers, one per issue. Everything it started is stopped again."""
    # The weave reads its model from TRIAGE_MODEL; the demo stays offline whatever it says.
    os.environ["TRIAGE_MODEL"] = "echo"
    path = weave_file()
    weave = weave_config.load(path)
    had_supervisor = lock.running_pid(home) is not None
    say(f"== LOOM_HOME={home}")
    say(f"== loom up -d -c {path}")
    try:
        plan = apply.up(weave, home)
        for name in plan.started + plan.restarted + plan.unchanged:
            say(f"started   {name}")
        say(f"== sending {len(ISSUES)} issues to intake")
        for body in ISSUES:
            send("intake", body, home=home)
            say(f"sent      {body}")
        say("== waiting for digest's answer about each issue (echo repeats what it read)")
        digests = _wait_for_digests(home, len(ISSUES), timeout)
    finally:
        say("== loom down")
        apply.down(weave, home)
        if not had_supervisor:
            manage.stop(home)
    if len(digests) < len(ISSUES):
        raise LoomError(
            f"demo: digest answered {len(digests)} of {len(ISSUES)} issues in {timeout:g} s; "
            f"see 'loom agent logs digest' with LOOM_HOME={home}"
        )
    return digests


def _wait_for_digests(home: Path, count: int, timeout: float) -> list[str]:
    outbox = home / "agents" / "digest" / "outbox"
    deadline = time.monotonic() + timeout
    while True:
        names = list_messages(outbox) if outbox.is_dir() else []
        if len(names) >= count or time.monotonic() >= deadline:
            return [read_message(outbox / name).body for name in names]
        time.sleep(0.1)
