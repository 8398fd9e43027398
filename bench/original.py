"""The original TypeScript loom as a baseline, run side by side with loom in the same bench.

The original is not part of this repository. Get it at the commit the figures name and
Bun 1.x from npm (docs/performance.md, "Baselines"):

    git clone https://github.com/lorenzh/loom /tmp/loom-original
    git -C /tmp/loom-original checkout 358588f
    npm i --prefix /tmp/bun-npm bun

The benches find it through `--original PATH` (a checkout), else `$LOOM_ORIGINAL`, else
/tmp/loom-original; Bun through `$LOOM_BUN`, else `bun` on PATH, else
/tmp/bun-npm/node_modules/.bin/bun. Without both, every baseline cell says "not measured".

The original's layout, as its README describes it: `$LOOM_HOME/agents/NAME/inbox/*.msg`
(JSON `{v, id, from, ts, body}` named `{ts}-{id}.msg`), replies in `outbox/`, its runner
started by `bun packages/cli/src/main.ts agent start NAME --model echo/NAME`, which polls
the inbox every 200 ms. It never fsyncs.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

NOT_MEASURED = "not measured"
COMMIT = "358588f"


@dataclass(frozen=True)
class Original:
    """A checkout of the original loom and the Bun that runs it."""

    checkout: Path
    bun: str

    def cli(self, *args: str) -> list[str]:
        return [self.bun, str(self.checkout / "packages/cli/src/main.ts"), *args]

    def version(self) -> str:
        out = subprocess.run([self.bun, "--version"], capture_output=True, text=True, check=True)
        head = subprocess.run(
            ["git", "-C", str(self.checkout), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
        )
        commit = head.stdout.strip() if head.returncode == 0 else f"{COMMIT} (no .git, assumed)"
        return f"lorenzh/loom @{commit}, Bun {out.stdout.strip()}"


def find(path: str | None) -> tuple[Original | None, str]:
    """The original to measure against, or None and the reason it cannot be run."""
    checkout = Path(path or os.environ.get("LOOM_ORIGINAL") or "/tmp/loom-original")
    if not (checkout / "packages/cli/src/main.ts").is_file():
        return None, f"no checkout of the original at {checkout} (see --original)"
    bun = os.environ.get("LOOM_BUN") or shutil.which("bun")
    fallback = Path("/tmp/bun-npm/node_modules/.bin/bun")
    if bun is None and fallback.exists():
        bun = str(fallback)
    if bun is None:
        return None, "no bun (npm i --prefix /tmp/bun-npm bun, or set LOOM_BUN)"
    return Original(checkout, bun), ""


def message_file(i: int, body: str) -> tuple[str, bytes]:
    """A message in the original's format: its filename and bytes."""
    ts = int(time.time() * 1000)
    ident = uuid.uuid4().hex[:16]
    data = {"v": 1, "id": ident, "from": "bench", "ts": ts, "body": body}
    return f"{ts}-{ident}.msg", json.dumps(data, indent=2).encode()


def count_messages(folder: Path) -> int:
    """Finished `.msg` files in a folder (no temporary or hidden ones)."""
    try:
        return sum(1 for n in os.listdir(folder) if n.endswith(".msg") and n[0] != ".")
    except FileNotFoundError:
        return 0


@dataclass(frozen=True)
class Drain:
    """One drain: seconds from the runner's start and from its first reply to the last."""

    count: int
    from_start: float
    from_first: float

    @property
    def rate_start(self) -> float:
        return self.count / self.from_start

    @property
    def rate_first(self) -> float:
        return (self.count - 1) / self.from_first if self.from_first > 0 else float("nan")


def time_drain(
    cmd: Sequence[str], env: dict[str, str], outbox: Path, count: int, timeout: float = 600
) -> Drain:
    """Start a runner on a full inbox and time it until `count` replies are in `outbox`."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    first = None
    try:
        while True:
            done = count_messages(outbox)
            now = time.perf_counter()
            if first is None and done >= 1:
                first = now
            if done >= count:
                break
            if proc.poll() is not None:
                raise SystemExit(f"runner exited early: {proc.stderr.read().decode()[-500:]}")  # type: ignore[union-attr]
            if now - started > timeout:
                raise SystemExit(f"drain timed out with {done}/{count} replies: {cmd}")
            time.sleep(0.005)
    finally:
        stop(proc)
    assert first is not None
    return Drain(count, now - started, now - first)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s, and reap."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def alternate(rounds: int, **runs: Callable[[], float] | None) -> dict[str, list[float]]:
    """Call each run once per round, the order turning each round; skip the None ones."""
    names = [n for n, f in runs.items() if f is not None]
    results: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for n in order:
            fn = runs[n]
            assert fn is not None
            results[n].append(fn())
    return results


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def ratio(loom: float, original: float | None, higher_is_better: bool) -> str:
    """loom against the original as a factor where > 1x means loom is better."""
    if original is None:
        return NOT_MEASURED
    factor = loom / original if higher_is_better else original / loom
    return f"{factor:.2f}x"
