"""Small helpers shared by the dev agent's tests: polling, parked blocking
calls, the devconsul command's ready line, and recording watch handlers."""

from __future__ import annotations

import json
import select
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tuggle_agent.harness import agent_command, wait_until

BIN = agent_command()[0]  # the tuggle-agent executable


class Blocked:
    """A call running on a thread, started once the dev agent has parked a
    blocking query for it: `.result` / `.elapsed` are set when it returns."""

    def __init__(self, cluster, call: Callable[[], object]):
        self.result: object = None
        self.elapsed: float | None = None
        self._call = call
        self._thread = threading.Thread(target=self._run, daemon=True)
        before = cluster.store.waiting()
        self._thread.start()
        wait_until(lambda: cluster.store.waiting() > before, what="the query to block")

    def _run(self) -> None:
        start = time.monotonic()
        self.result = self._call()
        self.elapsed = time.monotonic() - start

    @property
    def done(self) -> bool:
        return self.elapsed is not None

    def join(self, timeout: float = 10.0) -> object:
        self._thread.join(timeout)
        assert self.done, "blocked call did not return"
        return self.result


def readline(proc: subprocess.Popen, timeout: float) -> str:
    """One stdout line of a `tuggle-agent devconsul` process (its ready line)."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "no output from devconsul"
    return proc.stdout.readline().decode().strip()


RECORD = """#!/bin/sh
# Record one handler call: stdin -> <n>.json, $CONSUL_INDEX -> <n>.index.
out="$1"
n=$(ls "$out" | grep -c '\\.json$')
cat > "$out/$n.part"
echo "$CONSUL_INDEX" > "$out/$n.index"
if [ -n "$2" ]; then sleep "$2"; fi
mv "$out/$n.part" "$out/$n.json"
exit "${3:-0}"
"""


class Recorder:
    """A handler script that records every call into its own directory."""

    def __init__(self, root: Path, name: str = "rec"):
        self.dir = root / name
        self.dir.mkdir(parents=True)
        self.script = root / "record.sh"
        if not self.script.exists():
            self.script.write_text(RECORD)
            self.script.chmod(self.script.stat().st_mode | stat.S_IEXEC)

    def args(self, sleep: float | None = None, exit_code: int = 0) -> list[str]:
        return [str(self.script), str(self.dir), str(sleep or ""), str(exit_code)]

    def calls(self) -> list[tuple[bytes, int]]:
        done = sorted(self.dir.glob("*.json"), key=lambda p: int(p.stem))
        return [(p.read_bytes(), int((self.dir / f"{p.stem}.index").read_text())) for p in done]

    def wait(self, count: int, timeout: float = 5.0) -> list[tuple[bytes, int]]:
        return wait_until(lambda: len(self.calls()) >= count and self.calls(), timeout, what=f"{count} calls")


def write_config(directory: Path, *watches: dict, name: str = "watches.json") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(json.dumps({"watches": list(watches)}))
    return directory
