"""`dedupe`: drop a message whose key was already seen (per `by` value when given)."""

from __future__ import annotations

import json

from loom.pipeline import Pipeline, parse_definition
from loom.store.message import new_message


def run(definition: str, bodies: list[str]) -> tuple[list[str], dict[str, int]]:
    with Pipeline(parse_definition(definition, name="t"), instance="t") as pipe:
        out = [m.body for b in bodies for m in pipe.push(new_message("cli", b))]
        return out, dict(pipe.drops)


def test_a_seen_key_is_dropped_and_counted() -> None:
    bodies = ['{"id": 1, "v": "a"}', '{"id": 2}', '{"id": 1, "v": "b"}', '{"id": {"x": [1]}}']
    out, drops = run("- dedupe: {key: id}", [*bodies, '{"id": {"x": [1]}}'])
    assert out == bodies[:2] + bodies[3:]
    assert drops == {"1:dedupe": 2}


def test_the_short_form_names_the_key() -> None:
    assert run("- dedupe: id", ['{"id": 1}', '{"id": 1}'])[0] == ['{"id": 1}']


def test_keys_compare_as_canonical_json() -> None:
    out, _ = run("- dedupe: {key: k}", ['{"k": {"a": 1, "b": 2}}', '{"k": {"b": 2, "a": 1}}'])
    assert len(out) == 1


def test_a_null_key_always_passes() -> None:
    assert len(run("- dedupe: {key: id}", ["x", "x", "{}"])[0]) == 3


def test_by_scopes_the_keys() -> None:
    bodies = [json.dumps({"user": u, "id": i}) for u, i in [("a", 1), ("b", 1), ("a", 1), ("b", 2)]]
    out, _ = run("- dedupe: {key: id, by: user}", bodies)
    assert out == [bodies[0], bodies[1], bodies[3]]


def test_the_same_message_twice_is_caught_by_its_envelope_id() -> None:
    definition = parse_definition("- dedupe: \"envelope('id')\"", name="t")
    with Pipeline(definition, instance="t") as pipe:
        msg = new_message("cli", "x")
        assert len(pipe.push(msg)) == 1
        assert pipe.push(msg) == []
