"""Waiting and ports for the local-cluster harness: one polling rule and one way to
find or check ports on 127.0.0.1, shared by the tests, bench/ and `tuggle-agent dev`.

The rule for `wait_until`'s predicate, the same everywhere:

* a truthy return value ends the wait and is returned;
* a falsy value, or any `Exception` that is not an `AssertionError`, means "not yet":
  the thing waited for may not answer yet (connection refused, a file not written,
  a key missing). The wait goes on; if time runs out, the last such error is named
  in the `WaitTimeout` and chained as its cause, so a wait that never succeeds
  still shows why;
* an `AssertionError` means "this will never happen" (say, the process we wait for
  has exited): it propagates at once instead of burning the rest of the timeout.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

HOST = "127.0.0.1"


class WaitTimeout(AssertionError):
    """`wait_until` ran out of time. An AssertionError so that a test reads it as a
    failed expectation, and a wait nested in another's predicate fails that one too."""


def wait_until(pred: Callable[[], T], timeout: float = 10.0, interval: float = 0.02, what: str = "condition") -> T:
    """Poll `pred` until it returns something truthy and return that; see the module
    docstring for what an exception from `pred` means."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            value = pred()
            if value:
                return value
        except AssertionError:
            raise
        except Exception as exc:
            last_exc = exc
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    detail = f" (last error: {last_exc!r})" if last_exc else ""
    raise WaitTimeout(f"timed out after {timeout}s waiting for {what}{detail}") from last_exc


def free_port() -> int:
    """A port of 127.0.0.1 the kernel has just found free (released at once, so
    another process may take it before we do: callers retry or check)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:`port` now. SO_REUSEADDR, as
    our HTTP server and the dev agent set it, so a port in TIME_WAIT counts as free while
    one any socket holds (listening or merely bound) does not."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
        return True


def free_port_range(count: int) -> int:
    """A base port with `count` free ports after it (checked, then released)."""
    for _ in range(50):
        base = free_port()
        if base + count <= 65536 and all(port_is_free(p) for p in range(base, base + count)):
            return base
    raise RuntimeError(f"no {count} contiguous free ports found on {HOST}")
