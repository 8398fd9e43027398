"""Projects (SPEC 9): two loom.yml files under one LOOM_HOME never touch each other's processes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import kill_supervisor, run_loom, wait_for

from loom.store.home import pid_alive

AGENT = "version: 1\n{name}agents:\n  - name: {agent}\n    model: echo\n    system: {system}\n"


@pytest.fixture
def folders(tmp_path: Path, loom_home: Path) -> Iterator[dict[str, Path]]:
    made: dict[str, Path] = {}
    for key in ("a", "b"):
        made[key] = tmp_path / key
        made[key].mkdir()
    yield made
    for folder in made.values():
        if (folder / "loom.yml").exists():
            run_loom("down", cwd=folder)
    kill_supervisor(loom_home)


def write(folder: Path, agent: str = "first", system: str = "prompt", name: str = "") -> Path:
    path = folder / "loom.yml"
    top = f"name: {name}\n" if name else ""
    path.write_text(AGENT.format(name=top, agent=agent, system=system))
    return path


def pid(home: Path, agent: str) -> int | None:
    raw = (home / "agents" / agent / "pid").read_text().strip()
    return int(raw) if raw else None


def ps(*args: str) -> list[dict[str, object]]:
    r = run_loom("agent", "ps", "--all", "--json", *args)
    assert r.returncode == 0, r.stderr
    rows: list[dict[str, object]] = json.loads(r.stdout)
    return rows


def test_another_project_neither_restarts_nor_stops_an_agent_it_does_not_own(
    folders: dict[str, Path], loom_home: Path
) -> None:
    a_file = write(folders["a"], system="A's prompt")
    b_file = write(folders["b"], system="B's prompt")
    up_a = run_loom("up", "-d", cwd=folders["a"])
    assert up_a.returncode == 0, up_a.stderr
    before = pid(loom_home, "first")
    assert before is not None

    up_b = run_loom("up", "-d", cwd=folders["b"])
    assert up_b.returncode == 1
    assert "restarted" not in up_b.stdout
    problem = up_b.stderr.splitlines()[0]
    assert problem.startswith("loom.yml:3:")
    assert "agent 'first' belongs to project 'a'" in problem
    assert str(a_file.resolve()) in problem and str(b_file.resolve()) in problem
    assert "nothing started" in up_b.stderr

    assert (loom_home / "agents/first/prompt.md").read_text() == "A's prompt"
    assert pid(loom_home, "first") == before

    down_b = run_loom("down", cwd=folders["b"])
    assert down_b.returncode == 0, down_b.stderr
    assert "first" not in down_b.stdout
    assert pid(loom_home, "first") == before and pid_alive(before)
    assert (loom_home / "agents/first/status").read_text().strip() in ("idle", "running")
    # ... and it still answers.
    run_loom("send", "first", "still here")
    outbox = loom_home / "agents/first/outbox"
    wait_for(lambda: outbox.is_dir() and any(outbox.iterdir()), what="A's agent to answer")

    down_a = run_loom("down", cwd=folders["a"])
    assert down_a.stdout.split() == ["stopped", "first"]


def test_validate_names_both_files_of_a_name_held_by_another_project(
    folders: dict[str, Path],
) -> None:
    a_file = write(folders["a"])
    b_file = write(folders["b"])
    assert run_loom("up", "-d", cwd=folders["a"]).returncode == 0
    r = run_loom("validate", cwd=folders["b"])
    assert r.returncode == 1
    assert str(a_file.resolve()) in r.stderr and str(b_file.resolve()) in r.stderr
    assert "project 'a'" in r.stderr
    ok = run_loom("validate", cwd=folders["a"])
    assert ok.returncode == 0, ok.stderr


def test_ps_shows_the_project_and_filters_by_it(folders: dict[str, Path]) -> None:
    write(folders["a"], agent="first")
    write(folders["b"], agent="second", name="bee")  # `name:` overrides the folder's
    for key in ("a", "b"):
        r = run_loom("up", "-d", cwd=folders[key])
        assert r.returncode == 0, r.stderr
    hand = run_loom("agent", "start", "third", "--model", "echo", "-d")
    assert hand.returncode == 0, hand.stderr

    assert {r["name"]: r["project"] for r in ps()} == {
        "first": "a",
        "second": "bee",
        "third": None,
    }
    assert [r["name"] for r in ps("--project", "bee")] == ["second"]
    assert [r["name"] for r in ps("--project", "a")] == ["first"]

    table = run_loom("agent", "ps").stdout.splitlines()
    assert table[0].split()[-1] == "PROJECT"
    assert {row.split()[0]: row.split()[-1] for row in table[1:]} == {
        "first": "a",
        "second": "bee",
        "third": "-",
    }
    only = run_loom("agent", "ps", "--project", "bee").stdout.splitlines()
    assert [row.split()[0] for row in only[1:]] == ["second"]
    bad = run_loom("agent", "ps", "--project", "Bad/Name")
    assert bad.returncode == 2 and "invalid project name" in bad.stderr
    assert run_loom("agent", "stop", "third").returncode == 0


def test_up_refuses_a_running_hand_started_agent_until_it_is_stopped(
    folders: dict[str, Path], loom_home: Path
) -> None:
    write(folders["a"], system="from the file")
    hand = run_loom("agent", "start", "first", "--model", "echo", "--system", "by hand", "-d")
    assert hand.returncode == 0, hand.stderr
    before = pid(loom_home, "first")

    r = run_loom("up", "-d", cwd=folders["a"])
    assert r.returncode == 1
    assert "was not started by a loom.yml" in r.stderr
    assert "loom agent stop first" in r.stderr
    assert pid(loom_home, "first") == before
    assert (loom_home / "agents/first/prompt.md").read_text() == "by hand"

    assert run_loom("agent", "stop", "first").returncode == 0
    again = run_loom("up", "-d", cwd=folders["a"])
    assert again.returncode == 0, again.stderr
    assert again.stdout.split() == ["started", "first"]
    assert (loom_home / "agents/first/prompt.md").read_text() == "from the file"
    assert [r["project"] for r in ps()] == ["a"]


def test_a_hand_start_takes_a_stopped_agent_out_of_its_project(
    folders: dict[str, Path], loom_home: Path
) -> None:
    write(folders["a"])
    assert run_loom("up", "-d", cwd=folders["a"]).returncode == 0
    assert run_loom("down", cwd=folders["a"]).returncode == 0
    hand = run_loom("agent", "start", "first", "--model", "echo", "-d")
    assert hand.returncode == 0, hand.stderr
    assert [r["project"] for r in ps()] == [None]
    assert not (loom_home / "agents/first/weave").exists()
    # `down` of the project it left does not stop it.
    run_loom("down", cwd=folders["a"])
    assert (loom_home / "agents/first/status").read_text().strip() in ("idle", "running")
    assert run_loom("agent", "stop", "first").returncode == 0


def test_a_name_removed_from_one_file_is_free_for_another_project(
    folders: dict[str, Path], loom_home: Path
) -> None:
    write(folders["a"], agent="first")
    assert run_loom("up", "-d", cwd=folders["a"]).returncode == 0
    write(folders["a"], agent="other")
    moved = run_loom("up", "-d", cwd=folders["a"])
    assert moved.returncode == 0, moved.stderr
    assert "stopped   first" in moved.stdout
    write(folders["b"], agent="first")
    taken = run_loom("up", "-d", cwd=folders["b"])
    assert taken.returncode == 0, taken.stderr
    assert taken.stdout.split() == ["started", "first"]
    assert {r["name"]: r["project"] for r in ps()} == {"first": "b", "other": "a"}


def test_the_default_project_is_the_folder_name_made_into_a_loom_name(
    tmp_path: Path, loom_home: Path
) -> None:
    folder = tmp_path / "My_App.v2"
    folder.mkdir()
    write(folder)
    try:
        r = run_loom("up", "-d", cwd=folder)
        assert r.returncode == 0, r.stderr
        assert [row["project"] for row in ps()] == ["my-app-v2"]
        assert (loom_home / "agents/first/project").read_text().strip() == "my-app-v2"
        assert (loom_home / "agents/first/weave").read_text().strip() == str(
            (folder / "loom.yml").resolve()
        )
    finally:
        run_loom("down", cwd=folder)
        kill_supervisor(loom_home)


def test_a_folder_name_that_is_no_loom_name_asks_for_name(tmp_path: Path) -> None:
    folder = tmp_path / "2024"
    folder.mkdir()
    write(folder)
    r = run_loom("validate", cwd=folder)
    assert r.returncode == 1
    assert "loom.yml:1:1: the folder name '2024' cannot be a project name" in r.stderr
    assert "`name:`" in r.stderr
    write(folder, name="yearly")
    assert run_loom("validate", cwd=folder).returncode == 0


def test_a_bad_project_name_is_reported_at_its_place(tmp_path: Path) -> None:
    (tmp_path / "loom.yml").write_text("version: 1\nname: Not_Valid\nagents: []\n")
    r = run_loom("validate", cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.startswith("loom.yml:2:7: invalid project name 'Not_Valid'")


def test_a_pipe_of_one_project_may_not_take_an_agent_name_of_another(
    folders: dict[str, Path],
) -> None:
    write(folders["a"], agent="second")
    assert run_loom("up", "-d", cwd=folders["a"]).returncode == 0
    (folders["b"] / "loom.yml").write_text(
        "version: 1\npipes:\n  second:\n    from: [zed]\n    operators: [{map: '@'}]\n"
        "agents:\n  - {name: zed, model: echo}\n"
    )
    r = run_loom("validate", cwd=folders["b"])
    assert r.returncode == 1
    problems = [ln for ln in r.stderr.splitlines() if ln.startswith("loom.yml:")]
    assert len(problems) == 1
    assert problems[0].startswith("loom.yml:3:1: agent 'second' belongs to project 'a'")


def test_a_moved_folder_keeps_its_running_processes(tmp_path: Path, loom_home: Path) -> None:
    old = tmp_path / "old" / "shop"
    old.mkdir(parents=True)
    write(old)
    new = tmp_path / "new"
    try:
        assert run_loom("up", "-d", cwd=old).returncode == 0
        before = pid(loom_home, "first")
        (tmp_path / "old").rename(new)
        r = run_loom("up", "-d", cwd=new / "shop")
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["unchanged", "first"]
        assert pid(loom_home, "first") == before
        recorded = (loom_home / "agents/first/weave").read_text().strip()
        assert recorded == str((new / "shop" / "loom.yml").resolve())
    finally:
        run_loom("down", cwd=new / "shop")
        kill_supervisor(loom_home)
