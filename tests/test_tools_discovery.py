"""Finding and describing plugins (SPEC 12): every kind of broken plugin is reported, not
fatal; the project's plugins win over global ones; `describe` answers are cached."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import loom_cmd, run_loom
from plugin_kit import description, sh_plugin, write_script

from loom.tools.discovery import Plugin, discover, scan
from loom.tools.settings import ToolSettings

FAST = ToolSettings(describe_timeout=0.5)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder whose plugins live in .loom/plugins."""
    return tmp_path / "project"


def plugins_of(project: Path) -> Path:
    return project / ".loom" / "plugins"


def found(home: Path, project: Path, env: dict[str, str] | None = None) -> list[Plugin]:
    project.mkdir(parents=True, exist_ok=True)
    return discover(home, project, env or dict(os.environ), FAST)


def by_entry(plugins: list[Plugin]) -> dict[str, Plugin]:
    return {p.entry.name: p for p in plugins}


def test_a_valid_plugin_is_described(loom_home: Path, project: Path) -> None:
    sh_plugin(plugins_of(project), "greet", describe=description("greet", "Say hello.", who={}))
    [plugin] = found(loom_home, project)
    assert plugin.usable and plugin.problem is None
    assert (plugin.name, plugin.description, plugin.origin) == ("greet", "Say hello.", "project")
    assert plugin.input_schema == {"type": "object", "properties": {"who": {}}}
    assert plugin.spec().name == "greet"


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ("this is not json", "not JSON: 'this is not json'"),
        ("[1, 2]", "one JSON object"),
        ('{"description": "x", "input_schema": {"type": "object"}}', "no 'name'"),
        ('{"name": "x", "input_schema": {"type": "object"}}', "no 'description'"),
        ('{"name": "x", "description": "x"}', "'input_schema' must be"),
        ('{"name": "x", "description": "x", "input_schema": {"type": "string"}}', "input_schema"),
        (
            '{"name": "no spaces", "description": "x", "input_schema": {"type": "object"}}',
            "'no spaces' is not a valid tool name",
        ),
        (
            '{"name": "-x", "description": "x", "input_schema": {"type": "object"}}',
            "not a valid tool name",
        ),
    ],
)
def test_a_bad_description_is_a_problem(
    loom_home: Path, project: Path, answer: str, problem: str
) -> None:
    sh_plugin(plugins_of(project), "bad", describe=answer)
    [plugin] = found(loom_home, project)
    assert not plugin.usable
    assert plugin.name == "bad"  # named after its file when it cannot say its name
    assert plugin.problem is not None and problem in plugin.problem


def test_a_file_that_is_not_executable_is_a_problem(loom_home: Path, project: Path) -> None:
    path = sh_plugin(plugins_of(project), "lazy")
    path.chmod(0o644)
    [plugin] = found(loom_home, project)
    assert plugin.problem == f"not executable: run chmod +x {path}"


def test_an_executable_without_a_shebang_is_a_problem(loom_home: Path, project: Path) -> None:
    write_script(plugins_of(project), "noshebang", "echo hi\n")
    [plugin] = found(loom_home, project)
    assert plugin.problem is not None and "#!" in plugin.problem


def test_a_describe_that_hangs_is_stopped_at_the_timeout(loom_home: Path, project: Path) -> None:
    write_script(plugins_of(project), "sleepy", "#!/bin/sh\nsleep 30\n")
    started = time.monotonic()
    [plugin] = found(loom_home, project)
    assert time.monotonic() - started < 5
    assert plugin.problem == "describe did not finish within 0.5 s"


def test_a_failing_describe_shows_its_stderr(loom_home: Path, project: Path) -> None:
    write_script(plugins_of(project), "crashy", "#!/bin/sh\necho 'missing library' >&2\nexit 3\n")
    [plugin] = found(loom_home, project)
    assert plugin.problem == "describe exited with status 3: missing library"


def test_a_folder_plugin_runs_the_executable_of_its_name(loom_home: Path, project: Path) -> None:
    folder = plugins_of(project) / "weather"
    sh_plugin(folder, "weather")
    (folder / "data.txt").write_text("helper data\n")
    [plugin] = found(loom_home, project)
    assert plugin.usable and plugin.executable == (folder / "weather").resolve()


def test_a_folder_without_its_executable_is_a_problem(loom_home: Path, project: Path) -> None:
    sh_plugin(plugins_of(project) / "empty", "other")
    [plugin] = found(loom_home, project)
    assert plugin.problem == "a folder plugin needs an executable named empty inside"


def test_a_broken_link_is_a_problem(loom_home: Path, project: Path) -> None:
    plugins_of(project).mkdir(parents=True)
    (plugins_of(project) / "gone").symlink_to(project / "nowhere")
    [plugin] = found(loom_home, project)
    assert plugin.problem is not None and plugin.problem.startswith("a broken link")


def test_a_loop_of_links_is_a_problem_of_its_own_and_the_others_are_found(
    loom_home: Path, project: Path
) -> None:
    sh_plugin(plugins_of(project), "calc")
    (plugins_of(project) / "self").symlink_to("self")
    (plugins_of(project) / "one").symlink_to("two")
    (plugins_of(project) / "two").symlink_to("one")
    plugins = by_entry(found(loom_home, project))
    assert plugins["calc"].usable
    for name in ("self", "one", "two"):
        assert plugins[name].problem == "a link that leads back to itself"


def test_a_plugin_folder_that_is_a_loop_of_links_is_one_problem(
    loom_home: Path, project: Path
) -> None:
    sh_plugin(loom_home / "plugins", "clock")
    (project / ".loom").mkdir(parents=True)
    plugins_of(project).symlink_to("plugins")  # .loom/plugins -> itself
    [clock, folder] = found(loom_home, project)  # in name order
    assert (folder.origin, folder.entry) == ("project", plugins_of(project))
    assert folder.problem is not None and "cannot be listed" in folder.problem
    assert clock.usable and clock.origin == "global"
    r = run_loom("tools", cwd=project)
    assert r.returncode == 0 and r.stderr == ""
    assert f"problem: the folder {plugins_of(project)} cannot be listed" in r.stdout


# Root reads through every mode; without these capabilities it is refused like any user.
NO_OVERRIDE = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]


def test_a_plugin_that_cannot_be_searched_is_a_problem_and_the_others_are_listed(
    loom_home: Path, project: Path, tmp_path: Path
) -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    sh_plugin(plugins_of(project), "calc")
    sh_plugin(plugins_of(project) / "locked", "locked")  # a folder plugin, mode 000 below
    closed = tmp_path / "closed"
    sh_plugin(closed / "inside", "inside")
    (plugins_of(project) / "behind").symlink_to(closed / "inside")
    found(loom_home, project)  # described once while readable: the cache is not the test
    (plugins_of(project) / "locked").chmod(0)
    closed.chmod(0)
    try:
        r = subprocess.run(
            [*NO_OVERRIDE, *loom_cmd("tools", "--json")],
            capture_output=True,
            text=True,
            cwd=project,
            timeout=60,
        )
    finally:
        (plugins_of(project) / "locked").chmod(0o755)
        closed.chmod(0o755)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    listed = {p["name"]: p for p in json.loads(r.stdout)}
    assert listed["calc"]["usable"]
    for name in ("locked", "behind"):
        assert listed[name]["problem"] == "cannot be used: Permission denied", listed[name]


def test_hidden_entries_are_not_plugins(loom_home: Path, project: Path) -> None:
    sh_plugin(plugins_of(project), "visible")
    sh_plugin(plugins_of(project), "hidden", file_name=".hidden")
    assert [p.name for p in found(loom_home, project)] == ["visible"]


def test_the_project_plugin_shadows_a_global_one(loom_home: Path, project: Path) -> None:
    mine = sh_plugin(plugins_of(project), "calc", describe=description("calc", "Project calc."))
    theirs = sh_plugin(loom_home / "plugins", "calc", describe=description("calc", "Global."))
    sh_plugin(loom_home / "plugins", "only-global")
    plugins = found(loom_home, project)
    assert [(p.name, p.origin, p.usable) for p in plugins] == [
        ("calc", "project", True),
        ("calc", "global", False),
        ("only-global", "global", True),
    ]
    assert plugins[1].shadowed_by == mine and plugins[1].entry == theirs


def test_two_plugins_of_one_name_in_one_folder_are_both_problems(
    loom_home: Path, project: Path
) -> None:
    sh_plugin(plugins_of(project), "search", file_name="search-v1")
    sh_plugin(plugins_of(project), "search", file_name="search-v2")
    sh_plugin(loom_home / "plugins", "search")
    plugins = by_entry(found(loom_home, project))
    assert plugins["search-v1"].problem == "tool name 'search' is also used by search-v2 here"
    assert plugins["search-v2"].problem == "tool name 'search' is also used by search-v1 here"
    assert plugins["search"].shadowed_by is not None  # the project still owns the name
    assert not any(p.usable for p in plugins.values())


def test_a_project_folder_that_is_the_global_one_counts_once(loom_home: Path) -> None:
    sh_plugin(loom_home / "plugins", "calc")
    home_parent = loom_home.parent
    (home_parent / ".loom").symlink_to(loom_home)
    plugins = discover(loom_home, home_parent, dict(os.environ), FAST)
    assert [(p.name, p.origin, p.usable) for p in plugins] == [("calc", "global", True)]


def test_describe_is_cached_until_the_file_changes(loom_home: Path, project: Path) -> None:
    counter = project / "describes"
    answer = description("counted")
    path = write_script(
        plugins_of(project),
        "counted",
        f"#!/bin/sh\necho run >> \"$COUNTER\"\ncat <<'JSON'\n{answer}\nJSON\n",
    )
    env = {**os.environ, "COUNTER": str(counter)}
    for _ in range(3):
        assert found(loom_home, project, env)[0].usable
    assert counter.read_text().count("run") == 1
    cached = list((loom_home / "plugins" / ".cache").iterdir())
    assert len(cached) == 1 and json.loads(cached[0].read_text())["path"] == str(path)
    # A new version (another mtime) is described again.
    path.write_text(path.read_text().replace("A test tool.", "A better tool."))
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert found(loom_home, project, env)[0].description == "A better tool."
    assert counter.read_text().count("run") == 2


def test_a_failed_describe_is_cached_too(loom_home: Path, project: Path) -> None:
    write_script(plugins_of(project), "sleepy", "#!/bin/sh\nsleep 30\n")
    found(loom_home, project)
    started = time.monotonic()
    [plugin] = found(loom_home, project)
    assert time.monotonic() - started < 0.4
    assert plugin.problem == "describe did not finish within 0.5 s"


def test_scan_of_a_missing_folder_is_empty(tmp_path: Path) -> None:
    assert scan(tmp_path / "absent", "global", {}, FAST, cache_dir=None) == []


# ---------------------------------------------------------------- loom tools


def test_loom_tools_lists_tools_with_origin_and_problems(loom_home: Path, project: Path) -> None:
    sh_plugin(plugins_of(project), "calc", describe=description("calc", "Do sums.\nMore."))
    sh_plugin(loom_home / "plugins", "calc")
    write_script(plugins_of(project), "junk", "#!/bin/sh\necho garbage\n")
    project.mkdir(exist_ok=True)
    r = run_loom("tools", cwd=project)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["NAME", "ORIGIN", "DESCRIPTION"]
    assert lines[1].split(None, 2) == ["calc", "project", "Do sums."]
    assert lines[2].split(None, 2)[:2] == ["calc", "global"]
    assert f"shadowed by {plugins_of(project) / 'calc'}" in lines[2]
    assert lines[3].split(None, 2) == [
        "junk",
        "project",
        "problem: describe printed something that is not JSON: 'garbage'",
    ]


def test_loom_tools_json_is_for_scripts(loom_home: Path, project: Path) -> None:
    sh_plugin(plugins_of(project), "calc", describe=description("calc", "Sums.", expression={}))
    project.mkdir(exist_ok=True)
    r = run_loom("tools", "--json", cwd=project)
    assert r.returncode == 0, r.stderr
    [record] = json.loads(r.stdout)
    assert record == {
        "name": "calc",
        "origin": "project",
        "folder": str(plugins_of(project)),
        "path": str(plugins_of(project) / "calc"),
        "description": "Sums.",
        "input_schema": {"type": "object", "properties": {"expression": {}}},
        "usable": True,
        "problem": None,
        "shadowed_by": None,
    }


def test_loom_tools_with_no_plugins_prints_only_the_header(project: Path) -> None:
    project.mkdir()
    r = run_loom("tools", cwd=project)
    assert (r.returncode, r.stdout) == (0, "NAME  ORIGIN  DESCRIPTION\n")


def test_loom_tools_refresh_describes_again(loom_home: Path, project: Path) -> None:
    counter = project / "describes"
    answer = description("counted")
    write_script(
        plugins_of(project),
        "counted",
        f"#!/bin/sh\necho run >> \"$COUNTER\"\ncat <<'JSON'\n{answer}\nJSON\n",
    )
    env = {"COUNTER": str(counter)}
    run_loom("tools", cwd=project, env=env)
    run_loom("tools", cwd=project, env=env)
    run_loom("tools", "--refresh", cwd=project, env=env)
    assert counter.read_text().count("run") == 2
