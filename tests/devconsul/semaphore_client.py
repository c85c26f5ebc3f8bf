"""Client side of Consul's api.Semaphore protocol (consul-semantics.md §4.4)
written with py-consul, used only to prove the dev agent supports it
unchanged. (The product has its own implementation; this is a test aid.)

Sessions are created over raw HTTP because py-consul refuses TTLs below
10s and the tests use the 1s minimum of Timings.fast().
"""

from __future__ import annotations

import json
import threading
import time

import consul
import requests

FLAGS = 16210313421097356768  # SemaphoreFlagValue 0xe0f69a2baa414de0
WAIT = "1s"  # SemaphoreWaitTime is 15s; shorter keeps tests snappy


class SemaphoreConflict(Exception):
    pass


class Semaphore:
    def __init__(self, client: consul.Consul, http_addr: str, prefix: str, limit: int, ttl: str = "1s"):
        self.c = client
        self.http_addr = http_addr
        self.prefix = prefix.rstrip("/")
        self.limit = limit
        self.ttl = ttl
        self.session: str | None = None
        self._renewing = threading.Event()

    @property
    def lock_key(self) -> str:
        return f"{self.prefix}/.lock"

    def _start_session(self) -> None:
        body = {"Name": "Consul API Semaphore", "TTL": self.ttl, "Behavior": "delete"}
        self.session = requests.put(f"http://{self.http_addr}/v1/session/create", json=body, timeout=5).json()["ID"]
        self._renewing.set()
        threading.Thread(target=self._renew_loop, args=(self.session,), daemon=True).start()

    def _renew_loop(self, session: str) -> None:
        period = float(self.ttl.rstrip("s")) / 2
        while self._renewing.is_set():
            time.sleep(period)
            if not self._renewing.is_set():
                return
            try:
                self.c.session.renew(session)
            except consul.NotFound:
                return

    def crash(self) -> None:
        """Simulate the holder process dying: stop renewing, release nothing."""
        self._renewing.clear()

    def _state(self, pairs: list[dict]) -> tuple[int, dict]:
        lock = next((p for p in pairs if p["Key"] == self.lock_key), None)
        if lock is None:
            return 0, {"Limit": self.limit, "Holders": {}}
        if lock["Flags"] != FLAGS:
            raise SemaphoreConflict("existing key does not match semaphore use")
        state = json.loads(lock["Value"]) if lock["Value"] else {"Limit": self.limit, "Holders": {}}
        if state["Limit"] != self.limit:
            raise SemaphoreConflict(f"semaphore limit conflict (lock: {state['Limit']}, local: {self.limit})")
        return lock["ModifyIndex"], state

    @staticmethod
    def _encode(state: dict) -> bytes:
        holders = dict(sorted(state["Holders"].items()))  # Go sorts map keys
        return json.dumps({"Limit": state["Limit"], "Holders": holders}, separators=(",", ":")).encode()

    def acquire(self, timeout: float = 10.0) -> bool:
        self._start_session()
        contender = f"{self.prefix}/{self.session}"
        if not self.c.kv.put(contender, b"", acquire=self.session, flags=FLAGS):
            raise RuntimeError("failed to make contender entry")
        deadline = time.monotonic() + timeout
        index = None
        while time.monotonic() < deadline:
            index, pairs = self.c.kv.get(self.prefix, recurse=True, index=index, wait=WAIT)
            pairs = pairs or []
            modify_index, state = self._state(pairs)
            alive = {p["Session"] for p in pairs if p.get("Session")}
            state["Holders"] = {h: True for h in state["Holders"] if h in alive}  # prune dead holders
            if len(state["Holders"]) >= self.limit:
                continue  # block on the returned index
            state["Holders"][self.session] = True
            if self.c.kv.put(self.lock_key, self._encode(state), cas=modify_index, flags=FLAGS):
                return True
            index = None  # lost a CAS race: re-read at once
        self._give_up()
        return False

    def _give_up(self) -> None:
        self._renewing.clear()
        self.c.session.destroy(self.session)

    def release(self) -> None:
        while True:
            _, lock = self.c.kv.get(self.lock_key)
            modify_index, state = self._state([lock] if lock else [])
            state["Holders"].pop(self.session, None)
            if self.c.kv.put(self.lock_key, self._encode(state), cas=modify_index, flags=FLAGS):
                break
        self.c.kv.delete(f"{self.prefix}/{self.session}")
        self._give_up()
