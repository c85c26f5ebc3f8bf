"""Where a node stands in the change-log (engine/changes.py): it never moves back within
one log, a new log replaces it, and a damaged file means "no position" (a full reconcile)."""

from __future__ import annotations

from tuggle_agent.engine.changes import Cursor, Position


def test_cursor_moves_forward_only_within_one_log(tmp_path):
    cursor = Cursor(tmp_path)
    assert cursor.load() is None
    cursor.advance(Position(log=7, seq=10))
    cursor.advance(Position(log=7, seq=4))  # a slower reconcile that read an older position
    assert cursor.load() == Position(7, 10)
    cursor.advance(Position(log=9, seq=1))  # the log was deleted and written again
    assert Cursor(tmp_path).load() == Position(9, 1)  # persisted


def test_a_damaged_cursor_file_is_no_position(tmp_path):
    (tmp_path / "changes.json").write_text('{"log": "x"')
    assert Cursor(tmp_path).load() is None
    (tmp_path / "changes.json").write_text('{"log": 3}')
    assert Cursor(tmp_path).load() is None
