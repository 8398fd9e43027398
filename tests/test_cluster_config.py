"""`cluster:` and `hosts:` in loom.yml: validation, --host, and nothing of NATS without them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import run_loom

HEAD = 'version: 1\nname: demo\ncluster:\n  nats: "${LOOM_NATS:-nats://127.0.0.1:4222}"\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "loom.yml"
    path.write_text(text)
    return path


def test_a_clustered_weave_validates(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEAD + "agents:\n  - name: a\n    model: echo\n    hosts: [h1]\n"
        "  - name: b\n    model: echo\n    hosts: [h1, h2]\n    from: [a]\n",
    )
    done = run_loom("validate", str(path))
    assert done.returncode == 0, done.stderr
    assert "ok" in done.stdout


def test_with_cluster_every_agent_needs_hosts(tmp_path: Path) -> None:
    path = write(tmp_path, HEAD + "agents:\n  - name: a\n    model: echo\n")
    done = run_loom("validate", str(path))
    assert done.returncode == 1
    assert f"{path}:6:" in done.stderr
    assert "agent 'a' needs `hosts:` with `cluster:`" in done.stderr


def test_a_bad_server_url_and_bad_hosts_are_problems(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "version: 1\nname: demo\ncluster:\n  nats: http://x:4222\nagents:\n"
        "  - name: a\n    model: echo\n    hosts: [H1]\n",
    )
    done = run_loom("validate", str(path))
    assert done.returncode == 1
    assert "must start with nats:// or tls://" in done.stderr
    assert "invalid host name 'H1'" in done.stderr


def test_an_edge_between_hosts_needs_cluster(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "version: 1\nname: demo\nagents:\n  - name: a\n    model: echo\n    hosts: [h1]\n"
        "  - name: b\n    model: echo\n    hosts: [h2]\n    from: [a]\n",
    )
    done = run_loom("validate", str(path))
    assert done.returncode == 1
    assert "share no host: add `cluster:`" in done.stderr


def test_up_needs_a_host_and_one_the_weave_names(tmp_path: Path, loom_home: Path) -> None:
    path = write(tmp_path, HEAD + "agents:\n  - name: a\n    model: echo\n    hosts: [h1]\n")
    done = run_loom("up", "-d", "--config", str(path))
    assert done.returncode == 2
    assert "say which host this is with --host NAME (or LOOM_HOST)" in done.stderr
    done = run_loom("up", "-d", "--config", str(path), env={"LOOM_HOST": "h9"})
    assert done.returncode == 2
    assert "no agent of loom.yml runs on host 'h9' (its hosts: h1)" in done.stderr
    assert not (loom_home / "agents" / "a").exists()  # nothing started


def test_without_cluster_nothing_of_nats_is_loaded(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nname: demo\nagents:\n  - name: a\n    model: echo\n")
    code = (
        "import sys\n"
        "from pathlib import Path\nfrom loom.weave.config import load\n"
        "import loom.supervisor.core, loom.supervisor.child_main, loom.weave.apply\n"
        f"load(Path({str(path)!r}))\n"
        "assert not [m for m in sys.modules if m == 'nats' or m.startswith('nats.')]\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_without_the_client_validation_gives_the_install_command(tmp_path: Path) -> None:
    path = write(tmp_path, HEAD + "agents:\n  - name: a\n    model: echo\n    hosts: [h1]\n")
    # As on a machine without nats-py: the import system finds no `nats`.
    code = (
        "import sys\nsys.modules['nats'] = None\n"
        f"sys.argv = ['loom', 'validate', {str(path)!r}]\n"
        "from loom.cli import main\nmain()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 1
    assert "install it with: pip install 'loom-runtime[nats]'" in done.stderr
