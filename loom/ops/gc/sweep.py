"""One `loom gc` run: every housekeeping step, in an order that keeps it safe.

Messages are archived first (their files deleted only once the archive is written),
then logs, crash records, pipe steps and dedupe state are tidied, and last the delivery
logs are pruned of the names the archiving just removed from their outboxes, and
temporary files left by killed writers are removed.
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from loom.errors import ConfigError, LoomError, NotFound
from loom.names import validate_process_name
from loom.ops.gc import asks, leftovers, logs, messages, pipes, routes
from loom.ops.gc.report import Action, Report
from loom.ops.gc.retention import Retention
from loom.routing import Leg, load_routes, table_legs
from loom.routing.ledger import Start, read_since, router_dir
from loom.store import atomic
from loom.store.home import ProcessDir, all_processes


@contextmanager
def _exclusive(home: Path) -> Iterator[None]:
    with atomic.open_append(home / "gc.lock") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LoomError(
                "another loom gc is running on this LOOM_HOME; try again when it has finished"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def process_dirs(home: Path, only: str | None = None) -> list[ProcessDir]:
    """Every agent and pipe instance folder with a queue (or just `only`)."""
    if only is not None:
        only = validate_process_name(only)
    found = [
        proc for proc in all_processes(home, unstarted=True) if only is None or proc.name == only
    ]
    if only is not None and not found:
        raise NotFound(f"no agent or pipe named '{only}' under {home}; see 'loom agent ps --all'")
    return found


def _routing(home: Path, report: Report) -> tuple[list[Leg], dict[str, Start]] | None:
    try:
        legs = table_legs(load_routes(home))
    except (ConfigError, OSError) as exc:
        report.error(home / "routes.json", f"{exc}; outbox files are kept until it is fixed")
        return None
    return legs, read_since(home)


def run(
    home: Path,
    retention: Retention,
    *,
    only: str | None = None,
    dry_run: bool = False,
    on_action: Callable[[Action], None] | None = None,
    now: float | None = None,
) -> Report:
    """Do (or with `dry_run`, list) every housekeeping action; problems with single
    files are reported in the Report and do not stop the run."""
    report = Report(home, dry_run=dry_run, on_action=on_action)
    procs = process_dirs(home, only)
    lock = _exclusive(home) if not dry_run else _nothing()
    with lock:
        now = time.time() if now is None else now
        now_ms = int(now * 1000)
        gone = asks.collect(procs, keep=retention.asks, now=now, report=report)
        procs = [proc for proc in procs if proc.name not in gone]
        routing = _routing(home, report)
        batch = messages.Batch()
        for proc in procs:
            messages.collect_processed(
                proc.path, now_ms - retention.processed * 1000, batch, report
            )
            if routing is None:
                continue
            try:
                rules = messages.OutboxRules(home, proc.name, *routing)
            except ConfigError as exc:
                report.error(home / "routes.json", f"{exc}; outbox files are kept")
                continue
            cutoff = now_ms - retention.outbox * 1000
            messages.collect_outbox(proc.path, rules, cutoff, batch, report)
        messages.write(home, batch, report)
        log_dirs = [proc.logs for proc in procs]
        if only is None:
            log_dirs += [home / "supervisor" / "logs", router_dir(home) / "logs"]
        for folder in log_dirs:
            logs.tidy_logs(
                folder,
                compress_after=retention.logs_compress,
                delete_after=retention.logs_delete,
                now=now,
                report=report,
            )
        for proc in procs:
            logs.tidy_crashes(proc.crashes, keep=retention.crashes, now=now, report=report)
            if proc.kind == "pipes":
                pipes.tidy_steps(proc.path, keep=retention.steps, now=now, report=report)
                pipes.truncate_dedupe(proc, keep=retention.dedupe_keys, report=report)
        routes.tidy_delivery_logs(home, only, report)
        for root in [proc.path for proc in procs] if only is not None else [home]:
            leftovers.remove_temp_files(root, now=now, report=report)
    return report


@contextmanager
def _nothing() -> Iterator[None]:
    yield
