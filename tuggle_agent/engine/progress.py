"""Progress lines for long transfers: bytes, rate and ETA every few seconds."""

from __future__ import annotations

import logging
import time

from ..units import format_bytes, format_duration


class Progress:
    def __init__(self, log: logging.Logger, what: str, total: int | None, interval: float, start_at: int = 0):
        """`total` None: the size is not known in advance (a chunked upload): no percentage, no ETA."""
        self.log = log
        self.what = what
        self.total = total
        self.interval = interval
        self.started = time.monotonic()
        self.start_at = start_at
        self.done = start_at
        self._next = self.started + interval

    def update(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self.interval
            self.log.info("%s: %s", self.what, self.line(now))

    def rate(self, now: float | None = None) -> float:
        elapsed = (now or time.monotonic()) - self.started
        return (self.done - self.start_at) / elapsed if elapsed > 0 else 0.0

    def line(self, now: float | None = None) -> str:
        rate = self.rate(now)
        if self.total is None:
            return f"{format_bytes(self.done)} so far (size not announced), {format_bytes(rate)}/s"
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        pct = 100.0 * self.done / self.total if self.total else 100.0
        return (
            f"{format_bytes(self.done)} of {format_bytes(self.total)} ({pct:.0f}%), "
            f"{format_bytes(rate)}/s, ETA {format_duration(eta)}"
        )

    def summary(self) -> str:
        elapsed = time.monotonic() - self.started
        return f"{format_bytes(self.done - self.start_at)} in {elapsed:.2f}s ({format_bytes(self.rate())}/s)"
