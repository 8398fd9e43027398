"""The supervisor loop: watch children, restart them by policy, route messages (SPEC 7-8)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import select
import signal
import socket
import sys
import time
from pathlib import Path
from types import FrameType
from typing import IO

from loom import routing, settings
from loom.cluster import share as shares
from loom.errors import LoomError, is_disk_full
from loom.store import home as homes
from loom.store.home import ProcessDir, now_iso, pid_is_loom
from loom.store.logs import Log
from loom.store.watch import InotifyWatcher
from loom.supervisor import children, lock, metrics, record
from loom.supervisor.children import Child
from loom.supervisor.diskfull import DiskTrouble
from loom.supervisor.intervals import Intervals
from loom.supervisor.journal import Journal
from loom.supervisor.policy import (
    DEAD_AFTER,
    OPERATOR_ERROR,
    UPGRADE_ERROR,
    UPGRADE_EXIT,
    Backoff,
    recent_failures,
    wants_restart,
)

# How long a stopping supervisor waits for each child to finish its message before
# it kills it: less than systemd's TimeoutStopSec (90 s by default).
STOP_CHILDREN_S = 20.0
# How long `loom supervisor run` waits for an on-demand supervisor to hand over.
TAKEOVER_S = 15.0


class Supervisor:
    """Manages every detached agent and pipe instance under one `$LOOM_HOME`."""

    def __init__(
        self,
        home: Path,
        *,
        service: bool,
        log: Log,
        router: routing.Router | None = None,
        me: record.Record | None = None,
    ) -> None:
        self.home = home
        self.service = service
        self.me = me
        self.log = log
        self.router = router
        self.backoff = Backoff.from_env(os.environ)
        self.every = Intervals.from_env(os.environ)
        self.children: dict[str, Child] = {}
        self.restart_at: dict[str, float] = {}  # key -> monotonic time of the restart
        self._rescan = True
        self._stop = False
        self._handover = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._idle_since: float | None = None
        self.metrics = metrics.Exporter(home)
        self.disk = DiskTrouble(log)

    # -- signals -------------------------------------------------------------------
    def _on_hup(self, signum: int, frame: FrameType | None) -> None:
        self._rescan = True

    def _on_term(self, signum: int, frame: FrameType | None) -> None:
        self._stop = True

    def _on_usr1(self, signum: int, frame: FrameType | None) -> None:
        # `loom supervisor run` takes over: exit, leaving the children to it.
        self._stop = self._handover = True

    def _install(self) -> None:
        self._wake_w.setblocking(False)
        self._wake_r.setblocking(False)
        signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        signal.signal(signal.SIGHUP, self._on_hup)
        signal.signal(signal.SIGCHLD, lambda s, f: None)  # only to wake the select
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        signal.signal(signal.SIGUSR1, self._on_usr1)

    # -- the loop ------------------------------------------------------------------
    def run(self) -> None:
        """Serve until SIGTERM (service) or until nothing is left to supervise (on demand).

        SIGTERM and SIGINT stop the children too, each marked `pending` so that the next
        supervisor starts it again; SIGUSR1 leaves them running for the next one to
        adopt, as a crash of the supervisor does. `metrics.prom` is written a last time
        on the way out.
        """
        self._install()
        self.log.info("supervisor started", pid=os.getpid(), service=self.service)
        watch = _OutboxWatch()
        last_scan = 0.0
        last_stats = 0.0
        last_metrics = 0.0
        try:
            while not self._stop:
                try:
                    now = time.monotonic()
                    if self._rescan or now - last_scan >= self.every.rescan:
                        self._rescan = False
                        last_scan = now
                        if self.router is not None:
                            self._join_cluster()
                            self.router.reload()
                            self._ensure_instances()
                        self.scan()
                    self.reap()
                    self.start_due()
                    if self.router is not None:
                        self.router.pump()
                        # A held edge watches its destination's queue, so the list changes.
                        watch.update(self.router.watched())
                        if now - last_stats >= self.every.stats_every:
                            last_stats = now
                            self.router.write_stats()
                    if now - last_metrics >= self.every.metrics_every:
                        last_metrics = now
                        self._write_metrics()
                    self._record()
                    if not self.service and self._nothing_left(now):
                        self.log.info("nothing left to supervise; exiting")
                        break
                except OSError as exc:
                    if not is_disk_full(exc):
                        raise
                    self._pause(self.disk.failed(exc))
                    continue
                self.disk.recovered()
                self._wait(watch, last_scan)
            if not self._handover:
                self.stop_children()
        finally:
            watch.close()
            signal.set_wakeup_fd(-1)
            self.metrics.supervisor_up = False
            with contextlib.suppress(OSError):
                self._write_metrics()
            self.log.info("supervisor stopped", pid=os.getpid(), handover=self._handover)

    def _pause(self, seconds: float) -> None:
        """Wait `seconds` (a stop signal ends the wait early) before retrying the loop."""
        deadline = time.monotonic() + seconds
        while not self._stop and (left := deadline - time.monotonic()) > 0:
            with contextlib.suppress(InterruptedError):
                if select.select([self._wake_r.fileno()], [], [], left)[0]:
                    with contextlib.suppress(BlockingIOError):
                        self._wake_r.recv(4096)

    def _record(self) -> None:
        """Keep `supervisor.json`'s count of children current."""
        count = len(self.children)
        if self.me is not None and self.me.children != count:
            self.me = dataclasses.replace(self.me, children=count)
            record.write(self.home, self.me)

    def stop_children(self) -> None:
        """Stop every child gracefully, marked `pending` first: what ran before this
        stop runs again with the next supervisor. One that does not finish within
        STOP_CHILDREN_S is killed."""
        self.reap()
        stopping = dict(self.children)
        for key, child in stopping.items():
            proc = child.proc
            try:
                if proc.status not in ("stopped", "dead"):
                    proc.set_status("pending")
                proc.request_stop(child.pid)
            except OSError as exc:  # a full disk: it stops all the same, maybe for good
                self.log.error("stop not recorded", child=key, error=str(exc))
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGTERM)
            self.log.info("stopping", child=key, pid=child.pid)
        deadline = time.monotonic() + STOP_CHILDREN_S
        while stopping:
            for key, child in list(stopping.items()):
                if child.exit_status() is not None:
                    del stopping[key]
                    del self.children[key]
                    with contextlib.suppress(OSError):
                        child.proc.write("pid", "")
                    self.log.info("stopped", child=key, pid=child.pid)
            if stopping and time.monotonic() > deadline:
                for key, child in stopping.items():
                    self.log.warning("killed", child=key, pid=child.pid, detail="did not stop")
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(child.pid, signal.SIGKILL)
                deadline = float("inf")
            if stopping:
                time.sleep(0.02)

    def _write_metrics(self) -> None:
        try:
            self.metrics.update(self.router.stats() if self.router is not None else [])
        except OSError as exc:
            if is_disk_full(exc):
                raise  # the loop waits for space and says so once
            self.log.error("metrics not written", error=str(exc))

    def _join_cluster(self) -> None:
        """Give the router its publisher once `loom up --host` put this home in a cluster.

        Only then is the NATS client imported: a home without cluster.json never loads it.
        """
        if self.router is None or self.router.remote is not None:
            return
        if not shares.share_path(self.home).is_file():
            return
        from loom.cluster.publisher import Publisher  # the optional extra, only when used

        self.router.remote = Publisher(self.home)
        self.log.info("cluster joined", host=getattr(self.router.remote.share, "host", None))

    def _ensure_instances(self) -> None:
        """Create the folders of the pipe instances the routes need (spawned by scan)."""
        if self.router is None:
            return
        for instance, pipe in routing.instances(self.router.edges):
            try:
                routing.ensure_instance(self.home, instance, pipe)
            except LoomError as exc:
                self.log.error("pipe instance", child=instance, error=str(exc))

    def _nothing_left(self, now: float) -> bool:
        if self.children or self.restart_at:
            self._idle_since = None
            return False
        if self._idle_since is None:
            self._idle_since = now
        return now - self._idle_since >= self.every.linger

    def _wait(self, watch: _OutboxWatch, last_scan: float) -> None:
        now = time.monotonic()
        timeout = 0.0 if self._rescan else last_scan + self.every.rescan - now
        if self.restart_at:
            timeout = min(timeout, min(self.restart_at.values()) - now)
        if any(c.popen is None for c in self.children.values()):
            timeout = min(timeout, self.every.adopted_poll)
        if not self.service and not self.children and not self.restart_at:
            timeout = min(timeout, self.every.linger / 4)
        fds = [self._wake_r.fileno(), *watch.fds()]
        with contextlib.suppress(InterruptedError):
            ready, _, _ = select.select(fds, [], [], max(0.0, timeout))
            if self._wake_r.fileno() in ready:
                with contextlib.suppress(BlockingIOError):
                    self._wake_r.recv(4096)
            watch.drain(ready)

    # -- scanning ------------------------------------------------------------------
    def scan(self) -> None:
        """Look at every managed process's files and act on what they say."""
        for proc in homes.all_processes(self.home):
            if proc.read("mode") != "detached":
                continue  # a foreground runner belongs to the shell that started it
            key = _key(proc)
            if key in self.children or key in self.restart_at:
                continue
            status = proc.status
            if status == "pending":
                self._start(proc)
            elif status in ("running", "idle", "error"):
                # The queue's lock names a live owner for certain; the pid file is the
                # fallback for runners that take no lock (the original loom's).
                pid = proc.owner_pid() or proc.alive_pid()
                if pid is not None:
                    self.children[key] = children.adopt(proc, pid)
                    self.log.info("adopted", child=key, pid=pid)
                elif status == "error" and (held := children.upgrade_stop(proc)) is not None:
                    if children.still_blocked(proc, held):
                        continue
                    # The operator removed the message it could not read: go on.
                    self.log.info("resuming", child=key, detail="the newer message is gone")
                    proc.set_status("restarting")
                    self.restart_at[key] = time.monotonic()
                else:
                    # It died while no supervisor was watching.
                    self._crashed(proc, None, None)
            elif status == "restarting":
                self._schedule(proc, recent_failures(proc.crashes))

    def _start(self, proc: ProcessDir) -> None:
        key = _key(proc)
        owner = proc.owner_pid()
        if owner:
            # A live process already serves this queue (SPEC 4): a runner spawned now
            # would only be refused, so that process is the one to watch.
            self.children[key] = children.adopt(proc, owner)
            self.log.info("adopted", child=key, pid=owner)
            return
        try:
            child = children.spawn(proc, self.home)
        except OSError as exc:
            self.log.error("spawn failed", child=key, error=str(exc))
            self._crashed(proc, None, None)
            return
        self.children[key] = child
        self.log.info("started", child=key, pid=child.pid)

    # -- exits and restarts ----------------------------------------------------------
    def reap(self) -> None:
        """Handle every child that has exited since the last look."""
        for key, child in list(self.children.items()):
            ended = child.exit_status()
            if ended is None:
                continue
            del self.children[key]
            code, signum = ended
            proc = child.proc
            if not proc.exists():
                self.log.info("removed", child=key)  # by `loom rm`: nothing left to record
                continue
            # Decided by the stop request naming this pid, written before the signal:
            # by now `loom up` may already have written `pending` for the next process.
            stopped = proc.stop_requested(child.pid) or proc.status == "stopped"
            policy = proc.read("restart") or "always"
            self.log.info("exited", child=key, exit_code=code, signal=signum, stopped=stopped)
            if stopped:
                proc.write("pid", "")
                if proc.status == "pending":
                    self._rescan = True  # restarted by `loom up`: start the new one now
                continue
            if code == UPGRADE_EXIT:
                self._needs_upgrade(proc, code)
                continue
            clean = code == 0 and signum is None
            if clean and not wants_restart(policy, code, stopped=False):
                continue
            self._crashed(proc, code, signum)

    def _needs_upgrade(self, proc: ProcessDir, code: int) -> None:
        """Record once that `proc` stopped for a message from a newer loom (SPEC 2), or
        for a file of its own it cannot use (its stderr's last line says which).

        No restart and no count toward `dead`: it would only stop again. The periodic
        scan restarts it once that message has left the inbox; for a file, once the
        operator starts it again.
        """
        blocking = children.newer_message(proc)
        children.record_crash(
            proc,
            exit_code=code,
            signum=None,
            restart_count=proc.restarts,
            next_restart_at=None,
            error_type=UPGRADE_ERROR if blocking is not None else OPERATOR_ERROR,
            msg=blocking,
        )
        proc.write("pid", "")
        if proc.status != "error":  # killed before it could say so itself
            proc.set_status("error")
        if blocking is None:
            self.log.error(
                "needs the operator",
                child=_key(proc),
                error=children.last_error(proc),
                detail="fix or move away the file named, then start it again",
            )
            return
        self.log.error(
            "needs a newer loom",
            child=_key(proc),
            msg=blocking,
            detail="upgrade loom and start it again, or remove the message from its inbox",
        )

    def _crashed(self, proc: ProcessDir, code: int | None, signum: int | None) -> None:
        """Record a crash, then schedule a restart or declare the process dead."""
        key = _key(proc)
        policy = proc.read("restart") or "always"
        failures = recent_failures(proc.crashes) + 1
        restarts = proc.restarts
        will_restart = wants_restart(policy, code, stopped=False) and failures < DEAD_AFTER
        delay = self.backoff.delay(failures - 1) if will_restart else None
        children.record_crash(
            proc,
            exit_code=code,
            signum=signum,
            restart_count=restarts,
            next_restart_at=time.time() + delay if delay is not None else None,
        )
        proc.write("pid", "")
        if delay is None:
            reason = (
                f"it failed {failures} times within an hour"
                if failures >= DEAD_AFTER
                else f"it exited (code {code}, signal {signum}) and its restart policy is {policy}"
            )
            # Answers first: whoever sees `dead` can rely on the orphans having replies.
            orphans = children.fail_orphans(proc, reason)
            proc.set_status("dead")
            for name in orphans:
                self.log.error("failed", msg=name, child=key, error_type="dead", error=reason)
            self.log.error("dead", child=key, reason=reason, failed_messages=len(orphans))
            return
        proc.set_status("restarting")
        self.restart_at[key] = time.monotonic() + delay
        self.log.warning("crashed", child=key, exit_code=code, signal=signum, restart_in_s=delay)

    def _schedule(self, proc: ProcessDir, failures: int) -> None:
        self.restart_at[_key(proc)] = time.monotonic() + self.backoff.delay(max(failures - 1, 0))

    def start_due(self) -> None:
        """Restart every process whose backoff has elapsed (unless stopped meanwhile)."""
        now = time.monotonic()
        for key, when in list(self.restart_at.items()):
            if when > now:
                continue
            del self.restart_at[key]
            kind, name = key.split("/", 1)
            proc = ProcessDir(self.home, kind, name)
            if proc.status != "restarting":
                continue  # stopped (or taken over) while waiting
            proc.write("restarts", str(proc.restarts + 1))
            self._start(proc)


def _key(proc: ProcessDir) -> str:
    return f"{proc.kind}/{proc.name}"


class _OutboxWatch:
    """inotify on the outboxes the router reads, so a reply is routed at once."""

    def __init__(self) -> None:
        self._paths: list[Path] = []
        self._watcher: InotifyWatcher | None = None

    def update(self, paths: list[Path]) -> None:
        existing = sorted(p for p in paths if p.is_dir())
        if existing == self._paths:
            return
        self.close()
        self._paths = existing
        if existing:
            try:
                self._watcher = InotifyWatcher(existing)
            except OSError:
                self._watcher = None  # the periodic rescan and short timeouts cover it

    def fds(self) -> list[int]:
        return [self._watcher.fileno()] if self._watcher is not None else []

    def drain(self, ready: list[int]) -> None:
        if self._watcher is not None and self._watcher.fileno() in ready:
            self._watcher.wait(0)

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None
        self._paths = []


def run(home: Path, *, service: bool, foreground_log: bool) -> int:
    """Take the lock and supervise; 0 when done, 1 when another supervisor already runs.

    A service (`loom supervisor run`) takes over from a supervisor started on demand:
    it asks it to exit (SIGUSR1) and adopts its children. Every setting is checked
    first (SettingError), since the children inherit them.
    """
    settings.check_all()
    me = record.new(record.SERVICE if service else record.ON_DEMAND, now_iso())
    handle = _acquire(home, me) if service else lock.acquire(home, lambda: record.write(home, me))
    if handle is None:
        return 1
    log_dir = home / "supervisor" / "logs"
    log = Journal(log_dir, "supervisor", echo=sys.stderr if foreground_log else None)
    router = routing.Router(home, log)
    try:
        Supervisor(home, service=service, log=log, router=router, me=me).run()
    finally:
        record.remove(home, me.pid)
        lock.release(home, handle)
    return 0


def _acquire(home: Path, me: record.Record) -> IO[bytes] | None:
    """The lock for a service: an on-demand holder is asked to hand over, and waited for."""
    deadline = time.monotonic() + TAKEOVER_S
    asked: set[int] = set()
    while True:
        handle = lock.acquire(home, lambda: record.write(home, me))
        if handle is not None:
            return handle
        holder = record.read(home)
        running = lock.running_pid(home)
        if holder is not None and holder.pid == running and holder.mode == record.SERVICE:
            return None
        if holder is not None and holder.pid == running and holder.mode == record.ON_DEMAND:
            if holder.pid not in asked and pid_is_loom(holder.pid):
                asked.add(holder.pid)
                print(
                    f"loom: supervisor: taking over from the on-demand supervisor "
                    f"(pid {holder.pid}); its processes keep running",
                    file=sys.stderr,
                    flush=True,
                )
            with contextlib.suppress(ProcessLookupError):
                os.kill(holder.pid, signal.SIGUSR1)
        if time.monotonic() > deadline:
            return None
        time.sleep(0.05)
