"""Every delay the dev agent imitates, with Consul's defaults.

Real Consul waits minutes in places (blocking queries, watch back-off, session
TTL floors). Tests need the same logic on a shorter clock, so all of those
numbers live here and nowhere else.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Timings:
    """Durations in seconds. The defaults are Consul's own."""

    # Blocking queries: wait<=0 -> default, wait>max -> max, plus wait/16 jitter.
    default_query_time: float = 300.0
    max_query_time: float = 600.0
    query_jitter: bool = True
    # Health checks: first run after a random fraction of the interval;
    # intervals below the minimum are raised to it.
    check_stagger: bool = True
    check_min_interval: float = 1.0
    check_default_timeout: float = 10.0
    # Output-only changes of a check reach the catalog this much later.
    check_update_interval: float = 300.0
    # DeregisterCriticalServiceAfter: floor of the timeout and reaper period.
    deregister_critical_min: float = 60.0
    reap_interval: float = 30.0
    # Watch plans: after the n-th consecutive error sleep base*n^2, capped.
    watch_backoff_base: float = 5.0
    watch_backoff_max: float = 180.0
    # Sessions: TTL bounds, and the cap applied to a session's lock-delay.
    session_ttl_min: float = 10.0
    session_ttl_max: float = 86400.0
    lock_delay_max: float = 60.0
    # /v1/event/list blocks this long when given an index (and caps ?wait).
    event_list_max_wait: float = 600.0
    # Timeout of watch http handlers when http_handler_config has none.
    watch_http_timeout: float = 10.0

    @classmethod
    def fast(cls, **overrides: Any) -> Timings:  # float fields and bool switches
        """Values for tests: same logic, seconds instead of minutes.

        Jitter and check stagger are off so tests are deterministic; the
        lock-delay cap is 2s so a test re-acquiring after an invalidation
        does not sit out Consul's default 15s.
        """
        fast = cls(
            default_query_time=10.0,
            max_query_time=60.0,
            query_jitter=False,
            check_stagger=False,
            check_min_interval=0.05,
            check_default_timeout=2.0,
            check_update_interval=1.0,
            deregister_critical_min=0.0,
            reap_interval=0.1,
            watch_backoff_base=0.2,
            watch_backoff_max=2.0,
            session_ttl_min=1.0,
            lock_delay_max=2.0,
            event_list_max_wait=10.0,
            watch_http_timeout=5.0,
        )
        return dataclasses.replace(fast, **overrides)

    def replace(self, **overrides: Any) -> Timings:
        return dataclasses.replace(self, **overrides)
