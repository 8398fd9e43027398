"""Group commit (SPEC 4): a runner draining a backlog acknowledges its messages in
batches, and still never acknowledges a message before its reply is on disk.

Checked on the system calls of a real runner (`strace`), since a power cut cannot be
staged in a test: for every message, its reply file is fsynced, then renamed into the
outbox, then the outbox is fsynced, and only then is the message renamed into
`.processed/`, after which `.processed/` and `.in-progress/` are fsynced.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import wait_for

from loom.store.message import new_message

COUNT = 40
# `fsync(5</path>) = 0` with -y; rename, renameat and renameat2 with their two paths.
FSYNC = re.compile(r"\b(?:fsync|fdatasync)\(\d+<(?P<path>[^>]*)>\)\s+=\s+0")
RENAME = re.compile(
    r'\brename(?:at2?)?\((?:[^,]*, )?"(?P<src>[^"]*)", (?:[^,]*, )?"(?P<dst>[^"]*)"'
    r"(?:, [^)]*)?\)\s+=\s+0"
)


def _strace_works(tmp_path: Path) -> str | None:
    """Why strace cannot trace here (not installed, ptrace forbidden), or None."""
    if shutil.which("strace") is None:
        return "strace is not installed (apt-get install strace)"
    probe = subprocess.run(
        ["strace", "-f", "-o", str(tmp_path / "probe"), "true"], capture_output=True, timeout=30
    )
    if probe.returncode != 0:
        return f"strace cannot trace here: {probe.stderr.decode(errors='replace').strip()}"
    return None


def test_each_reply_is_durable_before_its_message_is_acknowledged(
    loom_home: Path, tmp_path: Path
) -> None:
    reason = _strace_works(tmp_path)
    if reason:
        pytest.skip(reason)
    agent = loom_home / "agents" / "a"
    inbox = agent / "inbox"
    inbox.mkdir(parents=True)
    (agent / "model").write_text("echo\n")
    names = []
    for i in range(COUNT):
        msg = new_message("test", f"message {i}")
        (inbox / msg.filename).write_bytes(msg.to_bytes())
        names.append(msg.filename)
    trace = tmp_path / "trace"
    env = dict(os.environ, LOOM_FSYNC="1")
    calls = "trace=fsync,fdatasync,rename,renameat,renameat2"
    cmd = ["strace", "-f", "-y", "-e", calls, "-o", str(trace)]
    tracer = subprocess.Popen(
        [*cmd, sys.executable, "-m", "loom", "agent", "serve", "a"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        processed = inbox / ".processed"
        wait_for(
            lambda: processed.is_dir() and len(os.listdir(processed)) == COUNT,
            timeout=120,
            what="every message acknowledged",
        )
        wait_for(lambda: (agent / "status").read_text().strip() == "idle", what="idle")
    finally:
        pid = (agent / "pid").read_text().strip() if (agent / "pid").exists() else ""
        if pid.isdigit():
            os.kill(int(pid), signal.SIGTERM)
        try:
            tracer.wait(30)
        except subprocess.TimeoutExpired:
            tracer.kill()
            tracer.wait()

    outbox = agent / "outbox"
    reply_of = {}
    for out in os.listdir(outbox):
        origin = json.loads((outbox / out).read_bytes())["origin"]
        reply_of[origin.rsplit("/", 1)[-1]] = out
    assert sorted(reply_of) == sorted(names)

    lines = trace.read_text().splitlines()
    fsyncs = [(i, m["path"]) for i, ln in enumerate(lines) if (m := FSYNC.search(ln))]
    renames = [(i, m["src"], m["dst"]) for i, ln in enumerate(lines) if (m := RENAME.search(ln))]

    def fsynced(path: Path, after: int, before: int) -> bool:
        return any(after < i < before and p == str(path) for i, p in fsyncs)

    for name in names:
        reply = reply_of[name]
        placed = next((i, src) for i, src, dst in renames if dst == str(outbox / reply))
        acked = next(i for i, _, dst in renames if dst == str(inbox / ".processed" / name))
        at, tmp = placed
        assert fsynced(Path(tmp), -1, at), f"reply {reply} renamed before it was fsynced"
        assert fsynced(outbox, at, acked), f"{name} acknowledged before the outbox was fsynced"
        for folder in (inbox / ".processed", inbox / ".in-progress"):
            assert fsynced(folder, acked, len(lines)), f"{folder.name} not fsynced after {name}"

    # Paid once per batch: one fsync per reply, and the three folders once per batch.
    drain = [p for i, p in fsyncs if renames[0][0] < i]
    assert len(drain) < COUNT * 1.5, f"{len(drain)} fsyncs for {COUNT} messages"
