"""Host-wide token buckets: one for downloads, one for uploads to peers.

Every transfer on the node draws from the same bucket, so `fetch_rate: 50MB`
caps what tuggle-agent takes from the NIC whatever the number of concurrent
fetches.  The bucket holds at most `burst` seconds' worth of tokens (0.25 s):
after an idle spell a transfer may run that much ahead, never more.  Bytes are
counted at the HTTP body level (headers and TCP overhead are not).
"""

from __future__ import annotations

import threading
import time


class TokenBucket:
    def __init__(self, rate: int | None, burst_seconds: float = 0.25):
        self.rate = rate
        self.capacity = (rate or 0) * burst_seconds
        self._tokens = self.capacity
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def take(self, n: int) -> None:
        """Block until `n` bytes may pass.  Debt is allowed, so large chunks work
        with small rates: the caller waits for the debt to be repaid."""
        if not self.rate or n <= 0:
            return
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= n
            debt = -self._tokens
        if debt > 0:
            time.sleep(debt / self.rate)
