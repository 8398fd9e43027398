"""routes.json: validation, cycles, atomic and locked changes, pipe instances (SPEC 7)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loom.errors import ConfigError, NotFound, UsageError
from loom.pipeline import parse_definition, save_definition
from loom.routing import (
    Edge,
    add_route,
    ensure_instance,
    find_cycle,
    instances,
    load_routes,
    remove_route,
    save_routes,
)
from loom.store.home import ProcessDir


def agents(home: Path, *names: str) -> None:
    for name in names:
        ProcessDir(home, "agents", name).create()


def define_pipe(home: Path, name: str) -> None:
    save_definition(parse_definition([{"map": "@"}], name=name), home)


def write_routes(home: Path, text: str) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / "routes.json"
    path.write_text(text, "utf-8")
    return path


def test_absent_file_is_an_empty_table(loom_home: Path) -> None:
    assert load_routes(loom_home) == []


def test_every_edge_shape_round_trips_in_the_spec_format(loom_home: Path) -> None:
    loom_home.mkdir()
    edges = [
        Edge("researcher", "editor"),
        Edge("researcher", "writer", pipe="finding-filter"),
        Edge("monitor", "notifier", when="severity >= `3`", limit=5),
        Edge("intake", pipe="triage"),
    ]
    save_routes(loom_home, edges)
    assert load_routes(loom_home) == edges
    lines = (loom_home / "routes.json").read_text().splitlines()
    assert lines[1] == '  {"from": "researcher", "to": "editor"},'
    assert lines[4] == '  {"from": "intake", "pipe": "triage"}'
    assert '"limit": 5' in lines[3]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[{"from": "a", "to": "b"}, {"from": "b"', "not valid JSON (line 1, column"),
        ("", "is empty (half-written?)"),
        ('{"from": "a"}', "must be a JSON list"),
        ('[{"from": "a", "to": "b", "form": "c"}]', "route 1: unknown key 'form'"),
        ('[{"from": "../etc", "to": "b"}]', "invalid route source '../etc'"),
        ('[{"from": "a"}]', "needs a destination ('to') or a pipe"),
        (
            '[{"from": "a", "to": "b", "when": "x =="}]',
            "'when' bad JMESPath expression at character",
        ),
        ('[{"from": "a", "to": "b", "limit": "9"}]', "'limit' must be a whole number"),
        ('[{"from": "a", "to": "b"}, {"from": "a", "to": "b"}]', "a → b appears twice"),
        ('[{"from": "a", "to": "p"}, {"from": "a", "pipe": "p"}]', "both deliver a's messages"),
    ],
)
def test_unusable_tables_are_refused_with_a_clear_sentence(
    loom_home: Path, text: str, expected: str
) -> None:
    write_routes(loom_home, text)
    with pytest.raises(ConfigError) as caught:
        load_routes(loom_home)
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_cycle_is_rejected_before_anything_is_written(loom_home: Path) -> None:
    agents(loom_home, "a", "b", "c")
    define_pipe(loom_home, "p")
    add_route(loom_home, Edge("a", "b", pipe="p"))
    add_route(loom_home, Edge("b", "c"))
    before = (loom_home / "routes.json").read_bytes()
    with pytest.raises(ConfigError, match=r"^circular route detected: a → b → c → a$"):
        add_route(loom_home, Edge("c", "a"))
    with pytest.raises(ConfigError, match="circular route detected: a → a"):
        add_route(loom_home, Edge("a", "a"))
    assert (loom_home / "routes.json").read_bytes() == before


def test_find_cycle_names_the_loop_and_accepts_a_dag() -> None:
    assert find_cycle([("a", "b"), ("b", "c"), ("a", "c")]) is None
    assert find_cycle([("x", "a"), ("a", "b"), ("b", "a")]) == ["a", "b", "a"]


def test_unknown_agents_and_pipes_are_refused(loom_home: Path) -> None:
    agents(loom_home, "a")
    with pytest.raises(NotFound, match="unknown agent 'ghost'; start it first or check the name"):
        add_route(loom_home, Edge("a", "ghost"))
    with pytest.raises(NotFound, match="unknown pipe 'nope'"):
        add_route(loom_home, Edge("a", pipe="nope"))
    assert load_routes(loom_home) == []


def test_routing_the_same_edge_again_updates_its_settings(loom_home: Path) -> None:
    agents(loom_home, "a", "b")
    add_route(loom_home, Edge("a", "b"))
    add_route(loom_home, Edge("a", "b", when="ok", limit=3))
    assert load_routes(loom_home) == [Edge("a", "b", when="ok", limit=3)]


def test_remove_route_finds_the_edge_or_says_why_not(loom_home: Path) -> None:
    agents(loom_home, "a", "b")
    define_pipe(loom_home, "p")
    define_pipe(loom_home, "q")
    add_route(loom_home, Edge("a", "b", pipe="p"))
    with pytest.raises(NotFound, match="no route a → c; see 'loom routes'"):
        remove_route(loom_home, "a", "c")
    add_route(loom_home, Edge("a", "b", pipe="q"))
    with pytest.raises(UsageError, match="name one with --pipe"):
        remove_route(loom_home, "a", "b")
    assert remove_route(loom_home, "a", "b", "q") == Edge("a", "b", pipe="q")
    assert remove_route(loom_home, "a", "b") == Edge("a", "b", pipe="p")
    assert load_routes(loom_home) == []


def test_pipe_instances_get_a_folder_the_supervisor_can_spawn(loom_home: Path) -> None:
    agents(loom_home, "a", "b", "intake")
    define_pipe(loom_home, "p")
    define_pipe(loom_home, "triage")
    edges = [Edge("a", "b", pipe="p"), Edge("intake", pipe="triage"), Edge("a", pipe="triage")]
    assert instances(edges) == [("p~a→b", "p"), ("triage", "triage")]
    proc = ensure_instance(loom_home, "p~a→b", "p")
    assert proc.path == loom_home / "pipes" / "p~a→b"
    assert (proc.inbox / ".in-progress").is_dir() and proc.outbox.is_dir()
    config = json.loads((proc.path / "config.json").read_text())
    assert config["name"] == "p" and config["operators"]
    settings = (proc.read("restart"), proc.read("mode"), proc.status)
    assert settings == ("always", "detached", "pending")
    proc.set_status("running")
    ensure_instance(loom_home, "p~a→b", "p")
    assert proc.status == "running"


def test_replace_routes_swaps_one_owner_s_edges_and_keeps_the_rest(loom_home: Path) -> None:
    from loom.routing import replace_routes

    agents(loom_home, "a", "b", "c", "d")
    add_route(loom_home, Edge("c", "d"))  # someone else's, added with `loom route`
    old = [Edge("a", "b")]
    replace_routes(loom_home, [], old)
    table = replace_routes(loom_home, old, [Edge("a", "c", when="x")])
    assert [(e.source, e.dest, e.when) for e in table] == [("c", "d", None), ("a", "c", "x")]
    assert load_routes(loom_home) == table
    with pytest.raises(ConfigError, match="circular route"):
        replace_routes(loom_home, [], [Edge("d", "c")])
    assert load_routes(loom_home) == table
