"""engine/disk.py's read tracking: open readers keep a copy from eviction, a copy being
evicted takes no new reader, last read times survive a restart."""

import json
import os
import time

from tuggle_agent.engine.disk import ReadFile, ReadTracker


def test_readers_block_eviction_and_eviction_turns_readers_away(tmp_path):
    t = ReadTracker(tmp_path / "last-read.json")
    release = t.begin("a")
    assert release is not None and t.readers("a") == 1
    assert not t.claim("a")  # being read: not evicted
    release()
    release()  # a second release is harmless
    assert t.readers("a") == 0
    assert t.claim("a")
    assert t.begin("a") is None  # being evicted: the reader fetches it instead
    t.unclaim("a", evicted=True)
    assert t.begin("a") is not None


def test_a_read_file_is_counted_until_closed(tmp_path):
    t = ReadTracker(tmp_path / "last-read.json")
    (tmp_path / "obj").write_bytes(b"x" * 10)
    release = t.begin("obj")
    assert release is not None
    f = ReadFile(tmp_path / "obj", release)
    assert f.read() == b"x" * 10 and t.readers("obj") == 1
    f.close()
    assert t.readers("obj") == 0


def test_last_read_times_persist_and_fall_back_to_the_file(tmp_path):
    path = tmp_path / "obj"
    path.write_bytes(b"x")
    os.utime(path, (1000.0, 2000.0))
    t = ReadTracker(tmp_path / "last-read.json")
    assert t.last_read("obj", path) == 2000.0  # never read since start: atime/mtime
    before = time.time()
    release = t.begin("obj")
    assert release is not None
    release()
    t.save()
    again = ReadTracker(tmp_path / "last-read.json")
    assert again.last_read("obj", path) >= before


def test_names_no_longer_held_are_forgotten(tmp_path):
    t = ReadTracker(tmp_path / "last-read.json")
    for name in ("kept", "deleted"):
        release = t.begin(name)
        assert release is not None
        release()
    t.save(held={"kept"})
    assert set(json.loads((tmp_path / "last-read.json").read_text())) == {"kept"}
