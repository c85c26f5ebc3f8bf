"""Small helpers shared by the dev agent's tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from tuggle_agent.harness import wait_until


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
