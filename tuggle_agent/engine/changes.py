"""Where this node stands in the change-log (objects/changelog.py): the log's identity
(its key's CreateIndex: a log deleted and written again is another log) and the last
sequence number whose change the node has applied. Persisted in
<data_dir>/.tuggle/changes.json so a restarted node resumes where it stopped, and a
watch delivery Consul repeats (first run, reload) costs nothing.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Position:
    log: int  # CreateIndex of the <ns>.changes key
    seq: int


class Cursor:
    def __init__(self, state_dir: Path):
        self.path = state_dir / "changes.json"
        self._lock = threading.Lock()

    def _read(self) -> Position | None:
        try:
            d = json.loads(self.path.read_text())
            return Position(int(d["log"]), int(d["seq"]))
        except (OSError, ValueError, TypeError, KeyError):
            return None  # none yet, or damaged: the caller reconciles fully

    def load(self) -> Position | None:
        with self._lock:
            return self._read()

    def advance(self, to: Position) -> None:
        """Record `to` unless it is behind what is recorded (a slower reconcile that
        read an older position must not move the cursor back)."""
        with self._lock:
            now = self._read()
            if now is not None and now.log == to.log and now.seq >= to.seq:
                return
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"log": to.log, "seq": to.seq}))
            tmp.replace(self.path)
