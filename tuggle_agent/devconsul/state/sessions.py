"""The session table: creation rules, TTL expiry, invalidation.

Invalidation (destroy, TTL expiry, a session check going critical or being
removed, node deregistration) releases or deletes the keys the session holds
and puts those keys into lock-delay, in one raft index like Consul's single
log entry.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..codec import Fields, format_duration, parse_duration
from ..errors import InvalidRequest, StateError

if TYPE_CHECKING:
    from ..timers import Scheduler, Timer
    from ..timings import Timings
    from .kv import KV
    from .store import Store, Txn

SERF_CHECK = "serfHealth"
TTL_MULTIPLIER = 2  # the leader expires a session after 2 x TTL without renewal
TOPIC = "session"


def session_topic(session_id: str) -> str:
    """One session's own wake-up topic: Consul's SessionGet watches that session's row
    only (the index it answers is still the sessions table's)."""
    return f"{TOPIC}/{session_id}"


def _lock_delay(value: object) -> float:
    """Seconds from a LockDelay field: a Go duration string or a number; values
    below 1000 (ns) are taken as seconds, as Consul's FixupLockDelay does."""
    if isinstance(value, str):
        try:
            seconds = parse_duration(value)
        except ValueError as err:
            raise InvalidRequest(f"Request decode failed: {err}") from err
        return seconds * 1e9 if seconds * 1e9 < 1000 else seconds
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) if value < 1000 else value / 1e9
    raise InvalidRequest("Request decode failed: invalid LockDelay")


class Sessions:
    def __init__(self, store: Store, kv: KV, scheduler: Scheduler, timings: Timings):
        self.store = store
        self.kv = kv
        self.scheduler = scheduler
        self.timings = timings
        self._timers: dict[str, Timer] = {}

    # -- creation ---------------------------------------------------------------
    def create(self, body: Fields, default_node: str) -> str:
        checks = body.get("Checks") if body.has("Checks") else [SERF_CHECK]
        node_checks = body.get("NodeChecks") if body.has("NodeChecks") else [SERF_CHECK]
        # Consul's fixupEmptySessionChecks: `"Checks": []` means no checks at
        # all, the default serfHealth in Checks defers to NodeChecks.
        if not checks:
            node_checks = []
        elif checks == [SERF_CHECK] or not node_checks:
            checks = []
        service_checks = [
            {"ID": c.get("ID", ""), "Namespace": c.get("Namespace", "")} for c in body.items("ServiceChecks")
        ]
        behavior = body.get("Behavior", "") or "release"
        if behavior not in ("release", "delete"):
            raise StateError(f"Invalid Behavior setting '{behavior}'")
        ttl = body.get("TTL", "")
        self._validate_ttl(ttl)
        session = {
            "ID": str(uuid.uuid4()),
            "Name": body.get("Name", ""),
            "Node": body.get("Node", "") or default_node,
            "LockDelay": round(_lock_delay(body.get("LockDelay", "15s")) * 1e9),
            "Behavior": behavior,
            "TTL": ttl,
            "NodeChecks": list(node_checks) or None,
            "ServiceChecks": service_checks or None,
        }
        if checks:
            session["Checks"] = list(checks)
        with self.store.write() as txn:
            self._validate_checks(session)
            index = txn.touch("sessions", TOPIC, session_topic(session["ID"]))
            session.update(CreateIndex=index, ModifyIndex=index)
            self.store.sessions[session["ID"]] = session
            self._arm_ttl(session)
        return session["ID"]

    def _validate_ttl(self, ttl: str) -> None:
        if not ttl:
            return
        try:
            seconds = parse_duration(ttl)
        except ValueError as err:
            raise StateError(f"Session TTL '{ttl}' invalid: {err}") from err
        lo, hi = self.timings.session_ttl_min, self.timings.session_ttl_max
        if seconds != 0 and not lo <= seconds <= hi:
            raise StateError(
                f"Invalid Session TTL '{int(seconds * 1e9)}', must be between "
                f"[{format_duration(lo)}={format_duration(hi)}]"
            )

    def _validate_checks(self, session: dict) -> None:
        node = session["Node"]
        if node not in self.store.nodes:
            raise StateError("Missing node registration")
        node_checks = self.store.checks.get(node, {})
        for check_id in check_ids(session):
            check = node_checks.get(check_id)
            if check is None:
                raise StateError(f"Missing check '{check_id}' registration")
            if check["Status"] == "critical":
                raise StateError(f"Check '{check_id}' is in critical state")

    # -- TTL ------------------------------------------------------------------------
    def _arm_ttl(self, session: dict) -> None:
        if old := self._timers.pop(session["ID"], None):
            old.cancel()
        if not session["TTL"]:
            return
        seconds = parse_duration(session["TTL"])
        if seconds > 0:
            sid = session["ID"]
            timer = self.scheduler.call_later(seconds * TTL_MULTIPLIER, lambda: self._expire(sid, timer))
            self._timers[sid] = timer

    def _expire(self, session_id: str, timer: Timer) -> None:
        with self.store.write() as txn:
            # A renew racing with the timer thread replaced the timer: keep it.
            if self._timers.get(session_id) is timer:
                self.invalidate(txn, session_id)

    def get(self, session_id: str) -> dict | None:
        with self.store.lock:
            session = self.store.sessions.get(session_id)
            return dict(session) if session else None

    def renew(self, session_id: str) -> dict | None:
        with self.store.lock:
            session = self.store.sessions.get(session_id)
            if session is not None:
                self._arm_ttl(session)
            return session

    # -- invalidation -----------------------------------------------------------
    def destroy(self, session_id: str) -> None:
        with self.store.write() as txn:
            self.invalidate(txn, session_id)

    def invalidate(self, txn: Txn, session_id: str) -> None:
        session = self.store.sessions.pop(session_id, None)
        if session is None:
            return
        if timer := self._timers.pop(session_id, None):
            timer.cancel()
        txn.touch("sessions", TOPIC, session_topic(session_id))
        delay = min(session["LockDelay"] / 1e9, self.timings.lock_delay_max)
        until = time.monotonic() + delay
        for key in self.kv.keys_held_by(session_id):
            if session["Behavior"] == "delete":
                self.kv.delete(txn, key)
            else:
                self.kv.release_session(txn, key)
            if delay > 0:
                self.store.lock_delay[key] = until

    def check_failed(self, txn: Txn, node: str, check_id: str) -> None:
        """A check went critical or was removed: sessions bound to it die."""
        for session in list(self.store.sessions.values()):
            if session["Node"] == node and check_id in check_ids(session):
                self.invalidate(txn, session["ID"])

    def node_removed(self, txn: Txn, node: str) -> None:
        for session in list(self.store.sessions.values()):
            if session["Node"] == node:
                self.invalidate(txn, session["ID"])

    def clear(self) -> None:
        with self.store.lock:
            for timer in self._timers.values():
                timer.cancel()
            self._timers.clear()

    # -- reads (caller holds store.lock) ----------------------------------------
    def query(self, session_id: str | None = None, node: str | None = None) -> tuple[int, list[dict], bool]:
        sessions: Iterable[dict] = self.store.sessions.values()
        if session_id is not None:
            sessions = [s for s in sessions if s["ID"] == session_id]
        if node is not None:
            sessions = [s for s in sessions if s["Node"] == node]
        result = sorted(sessions, key=lambda s: s["ID"])
        return self.store.max_index("sessions"), [dict(s) for s in result], True


def check_ids(session: dict) -> list[str]:
    ids = list(session["NodeChecks"] or []) + list(session.get("Checks") or [])
    return ids + [c["ID"] for c in session["ServiceChecks"] or []]
