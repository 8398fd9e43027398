"""Messages (SPEC 2): ids, validation, compatibility, origin propagation."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from typing import Any

import pytest

from loom.errors import UnreadableMessage, UnsupportedVersion
from loom.store.ids import new_id
from loom.store.message import child_origin, new_message, new_messages, parse


def ids_in_a_fresh_process(code: str) -> list[list[Any]]:
    """The `[ts, id]` pairs that `code` (given new_id, new_ids and a list `made`) collects.

    Ids made at fake future times would hold the id clock of the process at that time for
    the tests that follow, so those tests make them in a process of their own.
    """
    script = "\n".join(
        ["import json", "from loom.store.ids import new_id, new_ids", "made = []", code]
        + ["print(json.dumps(made))"]
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_ids_made_in_one_millisecond_sort_in_creation_order() -> None:
    made = [new_id(now_ms=1_700_000_000_000) for _ in range(5000)]
    names = [f"{ts}-{mid}.msg" for ts, mid in made]
    assert names == sorted(names)
    assert len(set(names)) == len(names)


def test_ids_stay_ordered_when_the_clock_steps_back() -> None:
    first, second = ids_in_a_fresh_process(
        "made += [new_id(now_ms=1_800_000_000_000), new_id(now_ms=1_700_000_000_000)]"
    )
    assert f"{second[0]}-{second[1]}" > f"{first[0]}-{first[1]}"


def test_new_ids_are_26_char_crockford_ulids() -> None:
    msg = new_message("cli", "hi")
    assert len(msg.id) == 26
    assert set(msg.id) <= set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
    assert msg.filename == f"{msg.ts}-{msg.id}.msg"


def test_original_loom_hex_ids_are_readable() -> None:
    raw = b'{"v":1,"id":"a1b2c3d4e5f60718","from":"monitor","ts":1742860000000,"body":"x"}'
    msg = parse(raw)
    assert msg.id == "a1b2c3d4e5f60718"
    assert msg.filename == "1742860000000-a1b2c3d4e5f60718.msg"


def test_round_trip_keeps_every_field_including_unknown_ones() -> None:
    raw = {
        "v": 1,
        "id": "01J",
        "from": "a",
        "ts": 5,
        "body": "b",
        "origin": "x.msg",
        "error": True,
        "to": ["b", "c"],
        "priority": 3,
    }
    assert json.loads(parse(json.dumps(raw)).to_json()) == raw


@pytest.mark.parametrize(
    "encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le"]
)
def test_a_message_file_in_any_json_encoding_is_read(encoding: str) -> None:
    # As json.loads takes bytes (RFC 8259 section 8.1 and the BOM): a file written by a
    # tool that writes UTF-16 or starts with a byte order mark is still a message.
    raw = {"v": 1, "id": "01J", "from": "a", "ts": 5, "body": "h\u00e9 \u2603 \U0001f600"}
    msg = parse(json.dumps(raw, ensure_ascii=False).encode(encoding))
    assert (msg.sender, msg.body) == ("a", raw["body"])


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{\xff\xfe",
        b'{"v": 1, "id": "01J", "from": "a", "ts": 5, "body": "\xe9"}',
        b"\x00\xff\xfe garbage",
        b"[1, 2]",
        b'{"v": 1, "id": "x", "from": "a", "ts": 1}',
        b'{"v": "1", "id": "x", "from": "a", "ts": 1, "body": ""}',
        b'{"v": 1.0, "id": "x", "from": "a", "ts": 1, "body": ""}',
        b'{"v": 1, "id": "../x", "from": "a", "ts": 1, "body": ""}',
        b'{"v": 1, "id": "x", "from": "a", "ts": "1", "body": ""}',
        b'{"v": 1, "id": "x", "from": "a", "ts": -5, "body": ""}',
        b'{"v": 1, "id": "x", "from": "a", "ts": 1, "body": {"k": 1}}',
        b'{"v": 1, "id": "x", "from": "a", "ts": 1, "body": "", "to": "b"}',
        b'{"v": 1, "id": "x", "from": "a", "ts": 1, "body": "",',
    ],
)
def test_invalid_messages_are_unreadable(raw: bytes) -> None:
    with pytest.raises(UnreadableMessage):
        parse(raw)


def test_a_newer_schema_version_asks_to_upgrade() -> None:
    with pytest.raises(UnsupportedVersion, match="upgrade loom"):
        parse(b'{"v": 2, "id": "x", "from": "a", "ts": 1, "body": ""}')


def test_origin_grows_by_one_filename_per_hop() -> None:
    root = new_message("cli", "question")
    first = root.reply("a", "answer")
    assert first.origin == root.filename
    second = first.reply("b", "again")
    assert second.origin == f"{root.filename}/{first.filename}"
    assert child_origin(None, "x.msg") == "x.msg"


def test_failure_replies_carry_error_and_origin() -> None:
    root = new_message("cli", "q")
    reply = root.reply("a", "could not answer", error=True)
    data = json.loads(reply.to_json())
    assert data["error"] is True
    assert data["origin"] == root.filename


CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def decode(text: str) -> int:
    value = 0
    for char in text:
        value = value * 32 + CROCKFORD.index(char)
    return value


def test_an_id_encodes_its_timestamp_and_counts_up_within_a_millisecond() -> None:
    first, second = ids_in_a_fresh_process(
        "made += [new_id(now_ms=1_900_000_000_000), new_id(now_ms=1_900_000_000_000)]"
    )
    assert decode(first[1][:10]) == first[0] == second[0] == 1_900_000_000_000
    assert decode(second[1][10:]) == decode(first[1][10:]) + 1


# Within one millisecond the first 22 characters are reused until the random part's
# low 20 bits carry over: walk a fresh random part to 20 ids before that carry, then
# make batches of several sizes, with single ids between them, across it.
_ACROSS_A_CARRY = f"""
ms = 1_950_000_000_000
low = 0
for char in new_id(now_ms=ms)[1][-4:]:
    low = low * 32 + {CROCKFORD!r}.index(char)
ahead = (1 << 20) - low - 21
while ahead > 0:
    ahead -= len(new_ids(min(ahead, 50_000)))
for size in (1, 2, 3, 5, 8, 13):
    made += new_ids(size)
    made.append(new_id())
"""


def test_batches_of_ids_are_what_one_by_one_ids_would_be() -> None:
    made = ids_in_a_fresh_process(_ACROSS_A_CARRY)
    assert all(ts == 1_950_000_000_000 and decode(i[:10]) == ts for ts, i in made)
    randoms = [decode(i[10:]) for _, i in made]
    assert randoms == list(range(randoms[0], randoms[0] + len(made)))
    assert len({i[:22] for _, i in made}) == 2  # the carry happened among them


def test_new_messages_are_fresh_messages_in_order() -> None:
    made = new_messages("stdin", ["a", "b", "c"])
    assert [m.body for m in made] == ["a", "b", "c"]
    assert all(m.sender == "stdin" and m.origin is None and not m.error for m in made)
    names = [m.filename for m in made]
    assert names == sorted(names) and len(set(names)) == 3


def test_with_body_and_with_to_copy_every_other_field() -> None:
    msg = parse(
        b'{"v":1,"id":"01J","from":"a","ts":5,"body":"b","origin":"x.msg","error":true,'
        b'"to":["c"],"priority":3}'
    )
    changed = msg.with_body("new")
    assert changed.to_dict() == {**msg.to_dict(), "body": "new"}
    assert msg.with_to(None).to_dict() == {k: v for k, v in msg.to_dict().items() if k != "to"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        changed.body = "x"  # type: ignore[misc]
