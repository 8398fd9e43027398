"""`route`: first matching case sets `to`; `mode: all`; a default; no match drops."""

from __future__ import annotations

import pytest

from loom.errors import ConfigError
from loom.pipeline import Pipeline, parse_definition
from loom.store.message import new_message

ROUTE = """
- route:
    - {when: "priority == 'urgent'", to: notifier}
    - {when: "contains(labels || `[]`, 'research')", to: [researcher, archivist]}
    - {to: archivist}
"""


def route(definition: str, body: str, sender: str = "cli") -> list[tuple[str, ...] | None]:
    with Pipeline(parse_definition(definition, name="t"), instance="t") as pipe:
        return [m.to for m in pipe.push(new_message(sender, body))]


def test_the_first_matching_case_wins() -> None:
    body = '{"priority": "urgent", "labels": ["research"]}'
    assert route(ROUTE, body) == [("notifier",)]
    assert route(ROUTE, '{"labels": ["research"]}') == [("researcher", "archivist")]


def test_the_last_case_without_when_is_the_default() -> None:
    assert route(ROUTE, '{"labels": []}') == [("archivist",)]
    assert route(ROUTE, "plain text") == [("archivist",)]


def test_mode_all_sends_to_every_matching_case() -> None:
    definition = """
- route:
    mode: all
    cases:
      - {when: "a", to: [x, y]}
      - {when: "b", to: [y, z]}
      - {to: fallback}
"""
    assert route(definition, '{"a": 1, "b": 1}') == [("x", "y", "z")]
    assert route(definition, '{"b": 1}') == [("y", "z")]
    assert route(definition, "{}") == [("fallback",)]


def test_mode_can_also_sit_beside_the_case_list() -> None:
    definition = "- route:\n    - {when: a, to: x}\n    - {when: b, to: y}\n  mode: all"
    assert route(definition, '{"a": 1, "b": 1}') == [("x", "y")]


def test_no_match_and_no_default_drops_and_counts() -> None:
    definition = parse_definition("- route:\n    - {when: \"sender() == 'a'\", to: x}", name="t")
    with Pipeline(definition, instance="t") as pipe:
        assert pipe.push(new_message("b", "{}")) == []
        assert [m.to for m in pipe.push(new_message("a", "{}"))] == [("x",)]
        assert pipe.drops == {"1:route": 1}


@pytest.mark.parametrize(
    ("definition", "problem"),
    [
        (
            "- route:\n    - {to: a}\n    - {when: x, to: b}",
            "only the last case can be the default",
        ),
        ("- route:\n    - {when: x, to: ../etc}", "invalid destination"),
        ("- route:\n    - {when: x}", "'to' is required"),
        ("- route:\n    - {when: x, to: a, too: b}", "unknown key 'too'"),
        ("- route: []", "non-empty list"),
        (
            "- route:\n    - {when: 'a.', to: a}",
            "r.yml:2:17: pipe 't', operator 1 (route): case 1, 'when': "
            "bad JMESPath expression at character 3",
        ),
    ],
)
def test_bad_routes_are_config_errors(definition: str, problem: str) -> None:
    with pytest.raises(ConfigError, match="operator 1 \\(route\\)") as info:
        parse_definition(definition, name="t", source="r.yml")
    assert problem in str(info.value)
    assert str(info.value).startswith("r.yml:")
