"""The router's delivery logs, pruned of names that left the source outbox.

A name is only needed while its file is in the source outbox (the router never sees it
again once it is gone), so the log can forget it; `ledger.prune` keeps the count.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from loom.ops.gc.report import Report
from loom.routing import ledger
from loom.routing.endpoints import locate

_NAME = r"[a-z][a-z0-9-]*"
_PROCESS = rf"{_NAME}(?:~{_NAME}→{_NAME})?"
LOG_RE = re.compile(rf"({_PROCESS})→({_PROCESS})\.log")


def tidy_delivery_logs(home: Path, only: str | None, report: Report) -> None:
    """Prune every delivery log (or those whose source is `only`)."""
    folder = ledger.router_dir(home) / "delivered"
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return
    for name in names:
        m = LOG_RE.fullmatch(name)
        if m is None or (only is not None and m.group(1) != only):
            continue
        source = m.group(1)
        outbox = locate(home, source).outbox

        def present(outbox: Path = outbox) -> set[str]:
            try:
                return set(os.listdir(outbox))
            except FileNotFoundError:
                return set()

        path = folder / name
        try:
            gone = ledger.prune(path, present, dry_run=report.dry_run)
        except OSError as exc:
            report.error(path, exc)
            continue
        if gone:
            noun = "name" if gone == 1 else "names"
            report.add("prune", path, f"{gone} {noun} no longer in {source}'s outbox")
