"""The queued pipe process: a pipe instance served like an agent runner (SPEC 6, last part).

Per claimed message, operator k's outputs go to `steps/<k>/` (see journal), its state is
committed, and the step is marked done; the last operator's outputs are the finished
messages, copied to `outbox/` before the ack. A crash at any instant is resumed from the
last completed step on restart, so every result reaches the outbox exactly once. Timed
work (window/buffer timeouts, throttle releases) runs as timer jobs through the same
steps. The Worker owns pid, status, signals and waiting (loom.store.worker).

With `concurrency: N` (only for operators that keep no state, so no step of one message
depends on another's) the Worker runs up to N messages through `handle` at once, each on
a thread of its own. Every message has its own journal entries, keyed by its filename,
so recovery resumes each of them as it does a single one; results leave in the order
they finish.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from loom.errors import LoomError, is_disk_full
from loom.names import INSTANCE_RE, canonical_process_name, validate_name
from loom.pipeline.definition import (
    instance_definition_path,
    load_definition,
    load_file,
    save_definition,
)
from loom.pipeline.engine import Pipeline, child_key, item_stem, parent_filename
from loom.pipeline.errors import OperatorError
from loom.pipeline.journal import Journal
from loom.pipeline.spec import PipeDef
from loom.store import home as homes
from loom.store.files import CONFIG_LIMIT, load_json, read_bounded
from loom.store.home import ProcessDir
from loom.store.ids import new_id
from loom.store.logs import Log, stderr_log
from loom.store.message import Message, child_origin, new_message
from loom.store.queue import Queue, list_messages
from loom.store.worker import Worker, read_claimed

Items = list[tuple[Message, str]]


@dataclass
class PipeProcess:
    """The Handler (loom.store.worker) of a pipe instance."""

    proc: ProcessDir
    pipeline: Pipeline
    log: Log

    def __post_init__(self) -> None:
        self.queue = Queue(self.proc.inbox, self.proc.outbox)
        self.journal = Journal(self.proc.steps)
        # Messages an earlier process left in `.in-progress/`: resumed from their last
        # completed step when the Worker hands them back to `handle`.
        self._resuming: set[str] = set()

    # -- Handler -------------------------------------------------------------------
    def recover(self) -> list[str]:
        """Finish the timer jobs a crash interrupted; return its in-progress messages."""
        for job, pos in self.journal.timers():
            self._recover_timer(job, pos)
        stranded = list_messages(self.queue.in_progress)
        self._resuming.update(stranded)
        return stranded

    def handle(self, name: str) -> None:
        resume = name in self._resuming
        if resume:
            self._resuming.discard(name)
            self.log.info("resuming", msg=name)
        self._process(name, resume=resume)

    def next_deadline(self) -> float | None:
        return self.pipeline.next_deadline()

    def on_deadline(self) -> None:
        now = self.pipeline.now()
        for pos in self.pipeline.due(now):
            self._timer(pos, now)

    def close(self) -> None:
        return None  # every step's state is written as it is taken

    # -- one inbox message ---------------------------------------------------------
    def _process(self, name: str, *, resume: bool) -> None:
        msg = read_claimed(self.queue, name, self.log)
        if not isinstance(msg, Message):
            return
        try:
            # The claim rename sets ctime: it tells this delivery from an earlier one
            # of the same filename, so an old manifest is never taken for this one's.
            token = str(os.stat(self.queue.claimed_path(name)).st_ctime_ns)
        except FileNotFoundError:
            return
        self.log.info("claimed", msg=name, sender=msg.sender)
        started = time.monotonic()
        stem = item_stem(name)
        try:
            with self.pipeline.counting_drops() as drops:
                items = [(self.pipeline.enter(msg, name), stem)]
                finals = self._run_job(stem, token, 0, items, resume=resume)
            for out in finals:
                self.queue.emit(out)
        except OperatorError as exc:
            self._fail(name, msg, exc.problem, exc.label, "operator_error")
            return
        except Exception as exc:  # any other failure must not stop the pipe (SPEC 6)
            if is_disk_full(exc):
                raise  # a full disk: the Worker pauses and resumes this job later
            self._fail(name, msg, f"{type(exc).__name__}: {exc}", None, "internal")
            return
        self.queue.acknowledge(name)
        # Which operator dropped it: `loom trace` and the metrics read this line.
        for label, count in drops.items():
            self.log.info("dropped", msg=name, operator=label, count=count)
        self.log.info(
            "processed",
            msg=name,
            outputs=[f.filename for f in finals],
            duration_ms=round((time.monotonic() - started) * 1000, 1),
            detail=None if finals else "nothing forwarded",
        )

    def _fail(
        self, name: str, msg: Message, problem: str, label: str | None, error_type: str
    ) -> None:
        where = f"operator {label}" if label else "the pipe"
        text = f"pipe {self.proc.name} could not process {name}: {where} failed: {problem}"
        reply = msg.reply(self.proc.name, text, parent_filename=name, error=True)
        self.queue.fail(name, reply, error_type=error_type, last_error=problem, attempts=1)
        self.log.error("failed", msg=name, operator=label, error_type=error_type, error=problem)

    # -- the steps of one job ------------------------------------------------------
    def _run_job(
        self, job: str, token: str, start: int, items: Items, *, resume: bool
    ) -> list[Message]:
        """Run `items` through operators `start..`, skipping steps already completed.

        Only a job resumed after a crash (`resume`) can have completed steps: a fresh
        claim has a token no manifest or state commit carries yet, so nothing is looked up.
        """
        current = items
        for pos in range(start, len(self.pipeline)):
            number = pos + 1
            keys = self.journal.read_done(number, job, token) if resume else None
            if keys is None and resume:
                applied = self.pipeline.applied(pos)
                if applied and applied.get("job") == job and applied.get("token") == token:
                    # Crashed after the state commit, before the manifest: the step's
                    # effect is in the state and its outputs are on disk.
                    keys = [str(k) for k in applied.get("outputs", [])]
                    self.journal.write_done(number, job, token, keys)
            if keys is not None:
                current = [(self.journal.read_output(number, k), k) for k in keys]
            else:
                current = self._run_step(pos, job, token, current)
            if not current:
                return []
        return [msg for msg, _ in current]

    def _run_step(self, pos: int, job: str, token: str, items: Items) -> Items:
        produced: Items = []
        try:
            for msg, key in items:
                outputs = self.pipeline.step(pos, msg, key)
                produced.extend((out, child_key(key, j)) for j, out in enumerate(outputs))
        except BaseException:
            self.pipeline.rollback(pos)
            raise
        return self._record(pos, job, token, produced)

    def _record(self, pos: int, job: str, token: str, produced: Items) -> Items:
        """Write a step's outputs, then commit the operator's state, then the manifest."""
        number = pos + 1
        try:
            if pos == len(self.pipeline) - 1:
                produced = [(self.pipeline.finish(msg), key) for msg, key in produced]
            for msg, key in produced:
                self.journal.write_output(number, key, msg)
            keys = [key for _, key in produced]
            self.pipeline.commit(pos, {"job": job, "token": token, "outputs": keys})
            self.journal.write_done(number, job, token, keys)
        except BaseException:
            # Back to the state on disk, so a resumed or failed job is not counted twice.
            self.pipeline.rollback(pos)
            raise
        return produced

    # -- timed work ----------------------------------------------------------------
    def _timer(self, pos: int, now: float) -> None:
        ts, uid = new_id()
        job = f"timer-{ts}-{uid}"
        # Recorded first: if we crash before the commit, recovery sees the job but no
        # applied state and drops it; the operator's deadline is still in its state.
        self.journal.start_timer(job, pos)
        try:
            released = self.pipeline.poll_operator(pos, now)
            items = [(msg, child_key(job, j)) for j, msg in enumerate(released)]
        except BaseException:
            self.pipeline.rollback(pos)
            raise
        produced = self._record(pos, job, job, items)
        self.log.info("timer", job=job, operator=self.pipeline.label(pos), outputs=len(produced))
        self._finish_timer(job, pos, produced, resume=False)

    def _recover_timer(self, job: str, pos: int) -> None:
        number = pos + 1
        keys = self.journal.read_done(number, job, job)
        applied = self.pipeline.applied(pos)
        if keys is None and applied and applied.get("job") == job:
            keys = [str(k) for k in applied.get("outputs", [])]
            self.journal.write_done(number, job, job, keys)
        if keys is None:
            self.journal.end_timer(job)
            return
        produced = [(self.journal.read_output(number, k), k) for k in keys]
        self.log.info("resuming", job=job, operator=self.pipeline.label(pos))
        self._finish_timer(job, pos, produced, resume=True)

    def _finish_timer(self, job: str, pos: int, produced: Items, *, resume: bool) -> None:
        """Take each released message through the rest of the chain, one job each."""
        last = pos == len(self.pipeline) - 1
        for msg, key in produced:
            try:
                if last:
                    finals = [msg]
                else:
                    finals = self._run_job(key, job, pos + 1, [(msg, key)], resume=resume)
                for out in finals:
                    self.queue.emit(out)
            except OperatorError as exc:
                self._fail_released(msg, key, exc.problem, exc.label)
            except Exception as exc:
                if is_disk_full(exc):
                    raise
                self._fail_released(msg, key, f"{type(exc).__name__}: {exc}", None)
        self.journal.end_timer(job)

    def _fail_released(self, msg: Message, key: str, problem: str, label: str | None) -> None:
        where = f"operator {label}" if label else "the pipe"
        text = f"pipe {self.proc.name} could not process a timed release: {where} failed: {problem}"
        origin = child_origin(msg.origin, parent_filename(msg))
        self.queue.emit(new_message(self.proc.name, text, origin=origin, error=True))
        self.log.error("failed", job=key, operator=label, error=problem)


# -- serving -----------------------------------------------------------------------
def serve(
    instance: str,
    home: Path | None = None,
    *,
    definition: PipeDef | None = None,
    foreground: bool = False,
) -> None:
    """Serve pipe instance `instance` until SIGTERM/SIGINT (status `stopped` on the way out).

    Without `definition` the instance's config.json is used (the pipe's, for
    `<pipe>~<src>→<dst>`).
    """
    root = homes.home(home)
    proc = homes.pipe_instance(instance, root)
    if definition is None:
        definition = load_file(instance_definition_path(instance, root))
    proc.create()
    # One owner per queue (SPEC 4): a second process is refused before it writes anything.
    owner = proc.own()
    log = stderr_log(proc.logs, instance, foreground)
    queue = Queue(proc.inbox, proc.outbox)
    status = "error"
    pipeline: Pipeline | None = None
    worker: Worker | None = None
    try:
        pipeline = Pipeline(definition, instance=instance, state_dir=proc.state, log=log)
        handler = PipeProcess(proc, pipeline, log)
        worker = Worker(
            proc,
            queue,
            handler,
            log,
            owner=owner,
            concurrency=definition.concurrency,
            finish_on_stop=True,
        )
        worker.install_signals()
        worker.mark_started()
        worker.serve()
        status = "stopped"
    except BaseException as exc:
        # Not echoed: the caller reports the error it gets (one line for the user).
        log.event("stopped on error", "error", echo=False, error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        if pipeline is not None:
            pipeline.close()
        if worker is not None:
            worker.mark_stopped(status)
        else:
            proc.set_status(status)
            owner.release()


def start(
    ref: str,
    *,
    instance: str | None = None,
    home: Path | None = None,
    cwd: Path | None = None,
) -> None:
    """`loom pipe start`: resolve the definition, store it if the instance has none, serve.

    `ref` may also be an instance name `<pipe>~<src>→<dst>` (its pipe is looked up).
    """
    root = homes.home(home)
    ref = canonical_process_name(ref)
    instance = canonical_process_name(instance) if instance else instance
    m = INSTANCE_RE.fullmatch(ref)
    if m is not None:
        instance = instance or ref
        ref = m.group(1)
    definition = load_definition(ref, root, cwd=cwd)
    instance = instance or validate_name(definition.name, "pipe instance name")
    path = instance_definition_path(instance, root)
    if not path.exists():
        save_definition(definition, root, name=path.parent.name)
    elif _stored(path) != _comparable(definition.to_json_data()):
        proc = homes.pipe_instance(instance, root)
        stderr_log(proc.logs, instance, True).warning(
            "definition differs",
            detail=f"running {definition.source}; {path} is older and was left as is",
        )
    serve(instance, root, definition=definition, foreground=True)


def _stored(path: Path) -> object:
    try:
        return _comparable(load_json(read_bounded(path, CONFIG_LIMIT, "pipe definition")))
    except (OSError, LoomError, ValueError, AttributeError):
        return None


def _comparable(data: dict[str, object]) -> dict[str, object]:
    # The stored name is the folder's; only what the pipe does matters here.
    return {k: v for k, v in data.items() if k not in ("name", "description")}
