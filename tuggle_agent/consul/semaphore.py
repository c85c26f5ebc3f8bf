"""Consul KV semaphore, wire-compatible with the Go `api.Semaphore` (consul-semantics 4.4).

Bounds how many fetches run against one source node cluster-wide.  A contender key
`<prefix>/<session>` is locked by a TTL session with behaviour `delete`, so a crashed
holder's key vanishes when its session expires and the next contender prunes it
from `<prefix>/.lock`.
"""

from __future__ import annotations

import json
import logging
import time

import consul

from .client import consul_errors
from .session import RenewedSession

log = logging.getLogger(__name__)

FLAGS = 16210313421097356768  # SemaphoreFlagValue, shared with Go clients


class SemaphoreConflict(RuntimeError):
    pass


class Semaphore:
    def __init__(self, client: consul.Consul, prefix: str, limit: int, session: RenewedSession):
        """`session` is the caller's (one per fetch): acquiring a slot then costs three
        KV requests instead of a session's creation and destruction each time."""
        self.c = client
        self.prefix = prefix.rstrip("/")
        self.limit = limit
        self.session = session
        self.held = False

    @property
    def lock_key(self) -> str:
        return f"{self.prefix}/.lock"

    def has_free_slot(self) -> bool:
        """A cheap read-only look, so busy sources cost no session writes."""
        with consul_errors(self.c, f"reading {self.prefix}"):
            _, entries = self.c.kv.get(self.prefix, recurse=True)
        _, holders = self._read_lock(entries or [])
        return len(holders) < self.limit

    def acquire(self, wait: float) -> bool:
        """Take a slot, blocking on Consul up to `wait` seconds for one to free up."""
        sid = self.session.id
        try:
            with consul_errors(self.c, f"acquiring a slot of {self.prefix}"):
                if not self.c.kv.put(f"{self.prefix}/{sid}", b"", acquire=sid, flags=FLAGS):
                    raise SemaphoreConflict(f"could not lock contender key {self.prefix}/{sid}")
                self.held = self._take_slot(sid, time.monotonic() + wait)
        except BaseException:
            self._drop_contender()
            raise
        if not self.held:
            self._drop_contender()
        return self.held

    def _take_slot(self, sid: str, deadline: float) -> bool:
        index = None
        while True:
            remaining = deadline - time.monotonic()
            if index is not None and remaining <= 0:
                return False
            wait = f"{max(1, int(remaining))}s" if index is not None else None
            index, entries = self.c.kv.get(self.prefix, recurse=True, index=index, wait=wait)
            lock_entry, holders = self._read_lock(entries or [])
            if len(holders) >= self.limit:
                continue
            holders[sid] = True
            body = json.dumps(
                {"Limit": self.limit, "Holders": dict(sorted(holders.items()))}, separators=(",", ":")
            ).encode()
            cas = lock_entry["ModifyIndex"] if lock_entry else 0
            if self.c.kv.put(self.lock_key, body, cas=cas, flags=FLAGS):
                return True
            index = None  # lost a CAS race: re-read at once

    def _read_lock(self, entries: list[dict]) -> tuple[dict | None, dict[str, bool]]:
        lock_entry = next((e for e in entries if e["Key"] == self.lock_key), None)
        holders: dict[str, bool] = {}
        if lock_entry is not None:
            if int(lock_entry.get("Flags") or 0) != FLAGS:
                raise SemaphoreConflict(f"{self.lock_key} exists but is not a semaphore (flags differ)")
            if lock_entry.get("Value"):
                state = json.loads(lock_entry["Value"])
                if int(state.get("Limit", self.limit)) != self.limit:
                    raise SemaphoreConflict(
                        f"semaphore limit conflict (lock: {state.get('Limit')}, local: {self.limit})"
                    )
                holders = dict(state.get("Holders") or {})
        live = {e.get("Session") for e in entries if e.get("Session")}
        return lock_entry, {h: True for h in holders if h in live}

    def release(self) -> None:
        if not self.held:
            return
        sid = self.session.id
        try:
            with consul_errors(self.c, f"releasing a slot of {self.prefix}"):
                for _ in range(20):
                    _, entry = self.c.kv.get(self.lock_key)
                    if entry is None or not entry.get("Value"):
                        break
                    state = json.loads(entry["Value"])
                    holders = state.get("Holders") or {}
                    if sid not in holders:
                        break
                    del holders[sid]
                    state["Holders"] = dict(sorted(holders.items()))
                    if self.c.kv.put(
                        self.lock_key,
                        json.dumps(state, separators=(",", ":")).encode(),
                        cas=entry["ModifyIndex"],
                        flags=FLAGS,
                    ):
                        break
        finally:
            self.held = False
            self._drop_contender()

    def _drop_contender(self) -> None:
        try:
            self.c.kv.delete(f"{self.prefix}/{self.session.id}")
        except Exception as exc:  # the session's end deletes it anyway (behaviour delete)
            log.warning("could not delete %s/%s (%s); it goes with the session", self.prefix, self.session.id, exc)
