"""The change-log (objects/changelog.py): what a node may take from it, and when it must
fall back to a full reconcile instead."""

from __future__ import annotations

import json

import pytest

from tuggle_agent.objects import changelog
from tuggle_agent.objects.changelog import LENGTH, Change, appended, encode, parse, pending

V = "0123456789abcdef0123456789abcdef"


def log_of(*seqs: int) -> list[Change]:
    return [Change(s, "put", f"obj-{s}", V) for s in seqs]


def test_appending_numbers_entries_and_keeps_the_last_length():
    changes = None
    for i in range(LENGTH + 5):
        changes = appended(changes, "put", f"o{i}", V)
    assert changes is not None and len(changes) == LENGTH
    assert [c.seq for c in changes] == list(range(6, LENGTH + 6))
    assert changes[-1] == Change(LENGTH + 5, "put", f"o{LENGTH + 4}", V)
    assert parse(encode(changes)) == changes  # round trip


def test_a_restarted_log_jumps_past_what_any_reader_saw():
    changes = log_of(7, 8, 9)
    restarted = appended(changes, "delete", "x", V, restart=True)
    assert [c.seq for c in restarted] == [9 + LENGTH + 1]
    # a reader anywhere in the old log sees a gap, never a continuation
    for applied in (7, 8, 9):
        assert pending(restarted, applied) is None


def test_pending_gives_only_what_was_not_applied():
    changes = log_of(5, 6, 7, 8)
    assert [c.seq for c in pending(changes, 6) or []] == [7, 8]
    assert [c.seq for c in pending(changes, 4) or []] == [5, 6, 7, 8]
    assert pending(changes, 8) == []


@pytest.mark.parametrize(("applied", "why"), [(2, "gap: 3 and 4 fell out of the log"), (9, "the log restarted")])
def test_pending_refuses_what_it_cannot_know(applied, why):
    assert pending(log_of(5, 6, 7, 8), applied) is None, why


def good() -> dict:
    return json.loads(encode(log_of(3, 4)))


def forged(**change) -> bytes:
    doc = good()
    doc["changes"][1].update(change)
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    "raw",
    [
        None,
        b"",
        b"not json",
        b"[]",
        b'{"v": 2, "changes": []}',
        b'{"v": 1, "changes": []}',
        b'{"v": 1, "changes": {}}',
        json.dumps({"v": 1, "changes": [c.__dict__ for c in log_of(*range(1, LENGTH + 2))]}).encode(),
        forged(seq=9),  # not consecutive
        forged(seq=True),
        forged(seq=4.0),
        forged(op="wipe"),
        forged(name="../etc/passwd"),
        forged(name=7),
        forged(version="a b"),
        b"{" + b" " * changelog.MAX_BYTES + b"}",
        json.dumps({"v": 1, "changes": ["x"]}).encode(),
    ],
    ids=lambda r: repr(r)[:40],
)
def test_malformed_or_forged_logs_are_refused(raw):
    assert parse(raw) is None


def test_a_well_formed_log_parses():
    assert parse(json.dumps(good()).encode()) == log_of(3, 4)
