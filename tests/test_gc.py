"""`loom gc` (SPEC 11): archive, compress, delete and truncate, safely and idempotently."""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import run_loom, spawn_loom, wait_for
from home_kit import chain, folder, put

from loom.ops.gc import archive
from loom.ops.gc import sweep as gc
from loom.ops.gc.retention import Retention
from loom.store.home import pid_is_loom
from loom.store.message import Message, new_message
from loom.store.queue import write_message
from loom.weave import config as weave_config

WEEK = 7 * 86400
LATER = time.time() + WEEK + 3600  # a week and an hour from now: today's files are old


def archived(home: Path) -> list[dict[str, object]]:
    found = []
    for path in sorted((home / "archive").glob("*.ndjson.gz")):
        with gzip.open(path, "rt") as f:
            found += [json.loads(line) for line in f]
    return found


def names(path: Path) -> set[str]:
    return {p.name for p in path.glob("*.msg")} if path.is_dir() else set()


def zero_config(tmp_path: Path, **extra: str) -> Path:
    retention = {"processed": "0d", "outbox": "0d", "steps": "0d", **extra}
    text = "version: 1\ngc:\n  retention:\n" + "".join(
        f"    {k}: {v}\n" for k, v in retention.items()
    )
    path = tmp_path / "loom.yml"
    path.write_text(text)
    return path


def test_old_messages_are_archived_then_deleted_and_a_second_run_is_quiet(
    loom_home: Path,
) -> None:
    root, first, second = chain(loom_home)
    young = Message("YOUNG", "cli", int((LATER - 3600) * 1000), "young")  # newer than the cutoff
    put(loom_home, "a", "processed", young)
    report = gc.run(loom_home, Retention(), now=LATER)
    assert report.summary() == "4 archived, 0 deleted, 0 compressed, 0 truncated, 0 pruned"
    # a and b have no routes: their outboxes are final results, archived too.
    assert names(folder(loom_home, "a", "processed")) == {young.filename}
    assert names(folder(loom_home, "a", "outbox")) == set()
    assert names(folder(loom_home, "c", "pending")) == {second.filename}  # inboxes untouched
    records = archived(loom_home)
    paths = {r["path"] for r in records}
    assert f"agents/a/inbox/.processed/{root.filename}" in paths
    assert f"agents/b/outbox/{second.filename}" in paths
    one = next(r for r in records if r["path"].endswith(first.filename) and "outbox" in r["path"])
    assert one["message"] == json.loads(first.to_json()) and isinstance(one["arrived"], int)
    again = gc.run(loom_home, Retention(), now=LATER)
    assert again.summary() is None and again.actions == []


def test_outbox_files_wait_until_every_route_delivered_them(loom_home: Path) -> None:
    for name in ("a", "b", "c"):
        folder(loom_home, name, "pending")
    assert run_loom("route", "a", "--to", "b").returncode == 0
    assert run_loom("route", "a", "--to", "c").returncode == 0
    both = new_message("a", "delivered to both")
    half = new_message("a", "delivered to b only")
    for msg in (both, half):
        put(loom_home, "a", "outbox", msg)
    delivered = loom_home / "router" / "delivered"
    delivered.mkdir(parents=True)
    (delivered / "a→b.log").write_text(f"{both.filename}\n{half.filename}\n")
    (delivered / "a→c.log").write_text(f"{both.filename}\n")
    report = gc.run(loom_home, Retention(), now=LATER)
    assert names(folder(loom_home, "a", "outbox")) == {half.filename}
    assert [a.path for a in report.actions if a.verb == "archive"] == [
        f"agents/a/outbox/{both.filename}"
    ]
    # The delivery logs forget the archived name but keep counting it.
    assert (delivered / "a→c.log").read_text() == "#pruned 1\n"
    routes = json.loads(run_loom("routes", "--json").stdout)
    assert [r["forwarded"] for r in routes] == [2, 1]


def test_dry_run_lists_and_changes_nothing(loom_home: Path, tmp_path: Path) -> None:
    chain(loom_home)
    logs = folder(loom_home, "a", "logs")
    (logs / "2020-01-01.ndjson").write_text('{"event": "old"}\n')
    before = sorted(str(p) for p in loom_home.rglob("*"))
    done = run_loom("gc", "--dry-run", "--config", str(zero_config(tmp_path)))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1].startswith("dry run, nothing changed: 4 archived, 1 deleted")
    assert any(line.startswith("would archive agents/a/inbox/.processed/") for line in lines)
    assert "would delete agents/a/logs/2020-01-01.ndjson" in lines
    assert sorted(str(p) for p in loom_home.rglob("*")) == before


def test_an_existing_archive_for_the_day_is_appended_to(loom_home: Path, tmp_path: Path) -> None:
    msg = new_message("cli", "today")
    put(loom_home, "a", "processed", msg)
    day = archive.day_of(msg.ts)
    earlier = {"path": "agents/a/inbox/.processed/1-EARLIER.msg", "message": {"v": 1}}
    archive.append_member(archive.archive_path(loom_home, day), archive.member([earlier]))
    done = run_loom("gc", "--config", str(zero_config(tmp_path)))
    assert done.returncode == 0, done.stderr
    target = loom_home / "archive" / f"{day}.ndjson.gz"
    shown = subprocess.run(
        f"zcat {target} | jq -r .path", shell=True, capture_output=True, text=True, check=True
    )
    assert shown.stdout.splitlines() == [
        earlier["path"],
        f"agents/a/inbox/.processed/{msg.filename}",
    ]
    # `loom trace` still finds an archived message.
    traced = run_loom("trace", msg.filename)
    assert traced.returncode == 0 and "a: processed [archived]" in traced.stdout


def test_retention_zero_archives_everything_done_but_never_todays_log(
    loom_home: Path, tmp_path: Path
) -> None:
    root, first, second = chain(loom_home)
    logs = folder(loom_home, "a", "logs")
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    two_days_ago = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%d")
    (logs / f"{today}.ndjson").write_text('{"event": "now"}\n')
    (logs / f"{two_days_ago}.ndjson").write_text('{"event": "then"}\n')
    config = zero_config(tmp_path, logs_compress="0d")
    done = run_loom("gc", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert (
        f"compress agents/a/logs/{two_days_ago}.ndjson → agents/a/logs/{two_days_ago}.ndjson.gz"
        in done.stdout
    )
    assert sorted(p.name for p in logs.iterdir()) == [
        f"{two_days_ago}.ndjson.gz",
        f"{today}.ndjson",
    ]
    assert (
        gzip.decompress((logs / f"{two_days_ago}.ndjson.gz").read_bytes()) == b'{"event": "then"}\n'
    )
    assert names(folder(loom_home, "c", "pending")) == {second.filename}
    assert len(archived(loom_home)) == 4
    assert run_loom("gc", "--config", str(config)).stdout == ""


@contextlib.contextmanager
def undeletable(path: Path) -> Iterator[None]:
    """Make `path` impossible to delete: immutable as root, a read-only folder otherwise."""
    if os.geteuid() == 0:
        if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
            pytest.skip("chattr +i is not supported here")
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)
    else:
        path.parent.chmod(0o555)
        try:
            yield
        finally:
            path.parent.chmod(0o700)


def test_a_file_that_cannot_be_deleted_is_reported_and_the_rest_is_done(
    loom_home: Path, tmp_path: Path
) -> None:
    stuck = new_message("cli", "stuck")
    fine = new_message("cli", "fine")
    put(loom_home, "a", "processed", stuck)
    put(loom_home, "b", "processed", fine)
    with undeletable(folder(loom_home, "a", "processed") / stuck.filename):
        done = run_loom("gc", "--config", str(zero_config(tmp_path)))
    assert done.returncode == 1
    assert done.stderr.startswith(
        f"loom: gc: cannot handle agents/a/inbox/.processed/{stuck.filename}: "
    )
    assert f"archive agents/b/inbox/.processed/{fine.filename}" in done.stdout
    assert (
        done.stdout.splitlines()[-1]
        == "1 archived, 0 deleted, 0 compressed, 0 truncated, 0 pruned, 1 error"
    )
    # The stuck file is in the archive already; the next run only deletes it, once.
    again = run_loom("gc", "--config", str(zero_config(tmp_path)))
    assert again.returncode == 0
    assert [r["path"] for r in archived(loom_home)].count(
        f"agents/a/inbox/.processed/{stuck.filename}"
    ) == 1


def test_a_concurrent_writer_loses_nothing(loom_home: Path) -> None:
    stop = threading.Event()
    written: list[str] = []
    log = folder(loom_home, "w", "logs") / f"{datetime.now(UTC):%Y-%m-%d}.ndjson"

    def writer() -> None:
        while not stop.is_set():
            msg = new_message("cli", "x" * 200)
            put(loom_home, "w", "processed", msg)
            put(loom_home, "w", "outbox", msg.reply("w", "y"))
            with open(log, "a") as f:
                f.write(json.dumps({"event": "replied", "msg": msg.filename}) + "\n")
            written.append(msg.filename)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(5):
            gc.run(loom_home, Retention(processed=0, outbox=0, logs_compress=0), now=None)
    finally:
        stop.set()
        thread.join()
    kept = names(folder(loom_home, "w", "processed"))
    gone = [
        str(r["path"]).rsplit("/", 1)[-1]
        for r in archived(loom_home)
        if "processed" in str(r["path"])
    ]
    assert len(gone) == len(set(gone))  # nothing archived twice
    assert set(gone) | kept == set(written) and not set(gone) & kept
    assert len(log.read_text().splitlines()) == len(written)  # today's log is never touched


def test_crashes_logs_and_steps_by_age(loom_home: Path) -> None:
    now = time.time()
    folder(loom_home, "a", "pending")
    crashes = folder(loom_home, "a", "crashes")
    old_crash = crashes / f"{int((now - 100 * 86400) * 1000)}-OLD.json"
    new_crash = crashes / f"{int((now - 10 * 86400) * 1000)}-NEW.json"
    for path in (old_crash, new_crash):
        path.write_text("{}")
    router_logs = loom_home / "router" / "logs"
    router_logs.mkdir(parents=True)
    (router_logs / "2020-01-01.ndjson.gz").write_bytes(gzip.compress(b"{}\n"))
    pipe = "pipe-p"
    busy = new_message("a", "being processed")
    put(loom_home, pipe, "in progress", busy)
    steps = loom_home / "pipes" / pipe / "steps" / "1"
    steps.mkdir(parents=True)
    stem = busy.filename[:-4]
    old = now - 8 * 86400
    done_ts = int(old * 1000)
    for name in (f"{stem}.0.msg", f"{stem}.done", f"{done_ts}-DONE.0.msg", f"{done_ts}-DONE.done"):
        (steps / name).write_text("{}")
        os.utime(steps / name, (old, old))
    report = gc.run(loom_home, Retention(), now=now)
    deleted = sorted(a.path for a in report.actions if a.verb == "delete")
    assert deleted == sorted(
        [
            f"agents/a/crashes/{old_crash.name}",
            "router/logs/2020-01-01.ndjson.gz",
            f"pipes/{pipe}/steps/1/{done_ts}-DONE.0.msg",
            f"pipes/{pipe}/steps/1/{done_ts}-DONE.done",
        ]
    )
    assert sorted(p.name for p in steps.iterdir()) == [f"{stem}.0.msg", f"{stem}.done"]


def dedupe_state(home: Path, pipe: str, keys: int) -> Path:
    """A snapshot of `keys - 2` keys and a journal adding two more (the state format)."""
    folder(home, pipe, "pending")
    state = home / "pipes" / pipe / "state" / "2-dedupe"
    state.mkdir(parents=True)
    applied = {"job": "j", "token": "t", "outputs": ["k"]}
    seen = [f'"k{i}"' for i in range(keys - 2)]
    snapshot = {"v": 1, "operator": "dedupe", "seq": 4, "state": {"seen": seen}, "applied": {}}
    (state / "state.json").write_text(json.dumps(snapshot))
    journal = [{"seq": 5, "delta": [f'"k{keys - 2}"'], "applied": {}}]
    journal.append({"seq": 6, "delta": [f'"k{keys - 1}"'], "applied": applied})
    (state / "journal.ndjson").write_text("".join(json.dumps(j) + "\n" for j in journal))
    return state


def test_dedupe_state_is_truncated_unless_a_live_process_holds_it(loom_home: Path) -> None:
    stopped = dedupe_state(loom_home, "pipe-stopped", 12)
    live = dedupe_state(loom_home, "pipe-live", 12)
    live_before = sorted((p.name, p.read_bytes()) for p in live.iterdir())
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "loom"]
    )  # "loom" in its command line, as a pipe process has
    try:
        wait_for(lambda: pid_is_loom(holder.pid), 10, "the holder to exec")
        (loom_home / "pipes" / "pipe-live" / "pid").write_text(f"{holder.pid}\n")
        report = gc.run(loom_home, Retention(dedupe_keys=5))
    finally:
        holder.kill()
        holder.wait()
    doc = json.loads((stopped / "state.json").read_text())
    assert doc["state"]["seen"] == [f'"k{i}"' for i in range(7, 12)]
    assert doc["applied"] == {"job": "j", "token": "t", "outputs": ["k"]}
    assert doc["seq"] == 7 and (stopped / "journal.ndjson").read_text() == ""
    assert sorted((p.name, p.read_bytes()) for p in live.iterdir()) == live_before
    lines = [a.line() for a in report.actions]
    assert "truncate pipes/pipe-stopped/state/2-dedupe/state.json: 12 keys to the last 5" in lines
    assert any(
        line.startswith("skip pipes/pipe-live/state/2-dedupe/state.json: 12 keys, but")
        for line in lines
    )


def test_a_truncated_dedupe_forgets_old_keys_only(loom_home: Path, reap: list) -> None:
    spec = "- dedupe: {key: id}\n"
    assert run_loom("pipe", "create", "once", input=spec).returncode == 0
    inbox = loom_home / "pipes" / "once" / "inbox"

    def serve_until(processed: int) -> None:
        pipe = spawn_loom("pipe", "start", "once")
        reap.append(pipe)
        wait_for(lambda: len(names(inbox / ".processed")) == processed, 20, "the pipe")
        assert run_loom("agent", "stop", "once").returncode == 0
        pipe.wait(timeout=10)

    inbox.mkdir(parents=True)
    for i in range(12):
        write_message(inbox, new_message("cli", json.dumps({"id": i})))
    serve_until(12)
    assert gc.run(loom_home, Retention(dedupe_keys=5)).counts["truncate"] == 1
    for i in (0, 11):  # 0 was forgotten, 11 is among the last five
        write_message(inbox, new_message("cli", json.dumps({"id": i})))
    serve_until(14)
    bodies = [json.loads(p.read_text())["body"] for p in sorted(inbox.parent.glob("outbox/*.msg"))]
    assert [json.loads(b)["id"] for b in bodies] == [*range(12), 0]


def test_retention_comes_from_loom_yml_and_is_validated(loom_home: Path, tmp_path: Path) -> None:
    bad = tmp_path / "loom.yml"
    bad.write_text("version: 1\ngc:\n  retention:\n    processed: 7 days\n    keep: 1d\n")
    done = run_loom("gc", "--config", str(bad))
    assert done.returncode == 1  # as `loom validate` does for a weave with problems
    assert "loom.yml:4:5: gc.retention.processed must be a duration like 7d" in done.stderr
    assert "loom.yml:5:5: unknown gc.retention key 'keep'" in done.stderr
    good = tmp_path / "good.yml"
    good.write_text("version: 1\ngc:\n  retention: {processed: 12h, dedupe_keys: 100}\n")
    assert weave_config.retention(good) == Retention(processed=12 * 3600, dedupe_keys=100)
    assert run_loom("validate", "--config", str(good)).returncode == 0


def test_one_gc_at_a_time_and_agent_restricts_the_run(loom_home: Path, tmp_path: Path) -> None:
    chain(loom_home)
    loom_home.mkdir(exist_ok=True)
    with open(loom_home / "gc.lock", "ab") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        busy = run_loom("gc")
    assert busy.returncode == 1 and "another loom gc is running" in busy.stderr
    done = run_loom("gc", "--agent", "b", "--config", str(zero_config(tmp_path)))
    assert done.returncode == 0, done.stderr
    touched = {line.split()[1].split("/")[1] for line in done.stdout.splitlines()[:-1]}
    assert touched == {"b"}
    unknown = run_loom("gc", "--agent", "ghost")
    assert unknown.returncode == 1 and "no agent or pipe named 'ghost'" in unknown.stderr


def test_an_in_progress_parents_reply_stays_in_the_outbox(loom_home: Path) -> None:
    msg = new_message("cli", "crashed mid-way")
    put(loom_home, "a", "in progress", msg)
    reply = msg.reply("a", "written before the crash")
    put(loom_home, "a", "outbox", reply)
    gc.run(loom_home, Retention(), now=LATER)
    assert names(folder(loom_home, "a", "outbox")) == {reply.filename}
    assert names(folder(loom_home, "a", "in progress")) == {msg.filename}


def test_a_damaged_archive_is_never_appended_to(loom_home: Path, tmp_path: Path) -> None:
    msg = new_message("cli", "keep me")
    put(loom_home, "a", "processed", msg)
    target = archive.archive_path(loom_home, archive.day_of(msg.ts))
    whole = archive.member([{"path": "agents/a/inbox/.processed/1-OLD.msg", "message": {}}])
    target.parent.mkdir(parents=True)
    target.write_bytes(whole[: len(whole) // 2])  # cut short, as by a full disk
    before = target.read_bytes()
    done = run_loom("gc", "--config", str(zero_config(tmp_path)))
    assert done.returncode == 1 and "move it away and run loom gc again" in done.stderr
    assert target.read_bytes() == before
    assert names(folder(loom_home, "a", "processed")) == {msg.filename}
    traced = run_loom("trace", msg.filename)
    assert traced.returncode == 0 and "a: processed" in traced.stdout


def test_temporary_files_of_killed_writers_are_removed_after_an_hour(
    loom_home: Path, tmp_path: Path
) -> None:
    msg = new_message("cli", "hi")
    old = time.time() - 2 * 3600
    leftovers = [
        folder(loom_home, "a", "pending") / f".tmp-{msg.filename}-0badc0de",
        folder(loom_home, "a", "outbox") / f".tmp-{msg.filename}-12345678",
        folder(loom_home, "pipe-p", "steps/0") / f".tmp-{msg.filename}.0.msg-cafef00d",
        folder(loom_home, "pipe-p", "state/1-dedupe") / ".tmp-state.json-00000001",
        loom_home / "router" / "delivered" / ".tmp-since.json-0000abcd",
    ]
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text('{"half": ')
        os.utime(path, (old, old))
    young = folder(loom_home, "a", "outbox") / f".tmp-{msg.filename}-feedbeef"
    young.write_text("a writer at work")
    mine = folder(loom_home, "a", "memory") / ".tmp-notes.md"  # the user's, not a temporary
    mine.write_text("keep me")
    os.utime(mine, (old, old))
    put(loom_home, "a", "outbox", msg)
    relative = sorted(str(p.relative_to(loom_home)) for p in leftovers)

    dry = run_loom("gc", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    listed = sorted(ln.split()[2].rstrip(":") for ln in dry.stdout.splitlines() if ".tmp-" in ln)
    assert listed == relative
    assert all(p.exists() for p in leftovers)

    done = run_loom("gc")
    assert done.returncode == 0, done.stderr
    for rel in relative:
        assert f"delete {rel}: temporary file left by an interrupted write" in done.stdout
    assert not any(p.exists() for p in leftovers)
    assert young.exists() and mine.exists()
    assert (folder(loom_home, "a", "outbox") / msg.filename).exists()
    assert run_loom("gc").stdout == ""  # nothing left to do: cron stays quiet
