"""What Consul's watches deliver, and remembering which events were handled.

A watch result is JSON: one KV entry (the key watch on the change-log), a list of KV
entries (keyprefix watch), a list of user events (event watch), or `null` (no such
key, or no keys under the prefix).  Consul re-delivers old events
(first run, reload, errors), so handled event IDs are persisted in the data dir under
a file lock: a replayed event does nothing, even across restarts.
Imports stay light: the `handle-event` script validates its stdin with this module.
"""

from __future__ import annotations

import fcntl
import json
from contextlib import contextmanager
from pathlib import Path

REMEMBER = 2048


class BadInput(ValueError):
    pass


def classify(data) -> str:
    """'changes', 'kv', 'events' or 'empty' — or BadInput saying what was expected."""
    if data is None:
        return "kv"  # no change-log key, or no keys under the prefix: reconcile with all of KV
    if isinstance(data, dict) and "Key" in data and "ModifyIndex" in data:
        return "changes"
    if not isinstance(data, list):
        raise BadInput(
            f"expected a KV entry, a JSON list (Consul key, keyprefix or event watch output) or null, "
            f"got {type(data).__name__}"
        )
    if not data:
        return "empty"
    if all(isinstance(e, dict) and "Key" in e and "ModifyIndex" in e for e in data):
        return "kv"
    if all(isinstance(e, dict) and "ID" in e and "Name" in e and "LTime" in e for e in data):
        return "events"
    raise BadInput("expected a list of KV entries (with Key, ModifyIndex) or of user events (with ID, Name, LTime)")


def parse_watch_body(raw: bytes | str):
    """JSON + classify; BadInput for anything that is not a watch result."""
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise BadInput(f"not JSON ({exc})") from None
    return data, classify(data)


class HandledEvents:
    """Event IDs already acted on, persisted in <data_dir>/.tuggle/events.json."""

    def __init__(self, state_dir: Path):
        self.path = state_dir / "events.json"
        self.lock_path = state_dir / "events.lock"

    @contextmanager
    def locked(self):
        with open(self.lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two deliveries at once take turns
            try:
                ids = json.loads(self.path.read_text()) if self.path.exists() else []
            except ValueError:
                ids = []
            seen = list(ids)
            yield seen
            if seen != ids:
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text(json.dumps(seen[-REMEMBER:]))
                tmp.replace(self.path)
