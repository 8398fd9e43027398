"""The folders `loom ask` leaves (`agents/ask-<id>`, one per ask without `--agent`):
deleted whole once nothing serves them and they are older than `gc.retention.asks`."""

from __future__ import annotations

from loom.agent.ask import ASK_MARK, ASK_PREFIX
from loom.ops.gc.report import Report
from loom.store import atomic
from loom.store.home import ProcessDir

DETAIL = "folder of a finished loom ask"


def is_ask(proc: ProcessDir) -> bool:
    """Whether `proc` is the folder of one `loom ask` (not an agent named by the user)."""
    return (
        proc.kind == "agents"
        and proc.name.startswith(ASK_PREFIX)
        and (proc.path / ASK_MARK).is_file()
    )


def collect(procs: list[ProcessDir], *, keep: int, now: float, report: Report) -> set[str]:
    """Delete (or with a dry run, list) the ask folders last written more than `keep`
    seconds ago that no process serves; the names of those it took."""
    taken: set[str] = set()
    for proc in procs:
        if not is_ask(proc) or proc.path.is_symlink() or proc.served_by() is not None:
            continue
        try:
            newest = max(p.stat().st_mtime for p in (proc.path, *proc.path.iterdir()))
        except FileNotFoundError:
            continue
        except OSError as exc:
            report.error(proc.path, exc)
            continue
        if now - newest <= keep:
            continue
        if not report.dry_run:
            try:
                atomic.remove_tree(proc.path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                report.error(proc.path, exc)
                continue
        report.add("delete", proc.path, DETAIL)
        taken.add(proc.name)
    return taken
