"""Watch plans: Consul's api/watch plan loop, run against the node's own
HTTP API over real HTTP, one thread per watch.

The loop (api/watch/plan.go): fire on start with the current data; later
only when the index changed *and* the data differs; the handler runs
synchronously, so changes during a run coalesce; after a query error the
last index is forgotten (next success fires again) and the loop sleeps
base*n^2 (capped). Event watches prune the list to the events after the
one whose ID maps to the previous index -- or deliver everything when there
is no previous index or it fell out of the buffer.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import socket
import threading
from collections.abc import Callable
from email.message import Message
from typing import Any
from urllib.parse import quote, urlencode

from ..codec import go_json, uuid_to_uint64
from ..config import WatchSpec
from ..timings import Timings
from .tally import WATCH_USER_AGENT

Handler = Callable[[int, bytes], None]


class WatchError(Exception):
    pass


def _kv_pair(entry: dict) -> dict:
    """Go api.KVPair field order; Session is always present."""
    return {
        "Key": entry["Key"],
        "CreateIndex": entry["CreateIndex"],
        "ModifyIndex": entry["ModifyIndex"],
        "LockIndex": entry["LockIndex"],
        "Flags": entry["Flags"],
        "Value": entry.get("Value"),
        "Session": entry.get("Session", ""),
    }


def _user_event(event: dict) -> dict:
    keys = ("ID", "Name", "Payload", "NodeFilter", "ServiceFilter", "TagFilter", "Version", "LTime")
    return {k: event.get(k) for k in keys}


def request_for(spec: WatchSpec) -> tuple[str, list[tuple[str, str]], bool]:
    """(path, query params, 404 means "no data") of one watch query."""
    q = spec.query
    if spec.type == "keyprefix":
        return "/v1/kv/" + quote(q["prefix"]), [("recurse", "")], True
    if spec.type == "key":
        return "/v1/kv/" + quote(q["key"]), [], True
    if spec.type == "event":
        return "/v1/event/list", [("name", q["name"])] if q["name"] else [], False
    if spec.type == "services":
        return "/v1/catalog/services", [], False
    if spec.type == "nodes":
        return "/v1/catalog/nodes", [], False
    if spec.type == "service":
        params = [("tag", t) for t in q["tag"]] + ([("passing", "1")] if q["passingonly"] else [])
        return "/v1/health/service/" + quote(q["service"]), params, False
    if q["state"]:
        return "/v1/health/state/" + quote(q["state"]), [], False
    return "/v1/health/checks/" + quote(q["service"]), [], False


def decode_result(spec: WatchSpec, data: Any, last_index: int | None) -> Any:
    """The Go client's decoded value, in the shape the handler will receive."""
    if spec.type == "keyprefix":
        return None if data is None else [_kv_pair(e) for e in data]
    if spec.type == "key":
        return None if not data else _kv_pair(data[0])
    if spec.type == "event":
        events = [_user_event(e) for e in data or []]
        for i, event in enumerate(events):
            if last_index is not None and uuid_to_uint64(event["ID"]) == last_index:
                return events[i + 1 :]
        return events
    return data


class Plan:
    def __init__(
        self,
        spec: WatchSpec,
        port: int,
        handler: Handler,
        timings: Timings,
        log: logging.Logger,
        default_token: str = "",
    ):
        self.spec = spec
        # A watch without its own `token` sends none to Consul, whose HTTP
        # layer then applies the agent's default token; the dev agent's
        # stand-in for that is the cluster's agent token.
        self.token = spec.token or default_token
        self.port = port
        self.handler = handler
        self.timings = timings
        self.log = log
        self._stop = threading.Event()
        self._conn: http.client.HTTPConnection | None = None
        self._conn_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"watch-{spec.describe()}", daemon=True)
        # Consul's client has no timeout; ours only guards against a peer
        # that vanished without closing the socket.
        longest = max(timings.max_query_time, timings.event_list_max_wait)
        self._timeout = longest * 17 / 16 + 30

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop the loop and abort its in-flight query (Consul cancels the
        request context). A handler already running is left to finish."""
        self._stop.set()
        with self._conn_lock:
            if self._conn is not None and self._conn.sock is not None:
                with contextlib.suppress(OSError):
                    self._conn.sock.shutdown(socket.SHUT_RDWR)

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _get(self, path: str, params: list[tuple[str, str]]) -> tuple[int, Message, bytes]:
        # Consul's watch plans are Go api clients: Go's default User-Agent (tally.py counts by it).
        headers = {"User-Agent": WATCH_USER_AGENT, **({"X-Consul-Token": self.token} if self.token else {})}
        with self._conn_lock:
            if self._stop.is_set():
                raise WatchError("stopped")
            if self._conn is None:
                self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self._timeout)
            conn = self._conn
        try:
            conn.request("GET", f"{path}?{urlencode(params)}" if params else path, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.headers, resp.read()
        except (OSError, http.client.HTTPException) as err:
            with self._conn_lock:
                conn.close()
                self._conn = None
            raise WatchError(str(err) or type(err).__name__) from err

    def query(self, last_index: int | None) -> tuple[int, Any]:
        path, params, missing_ok = request_for(self.spec)
        if self.spec.datacenter:
            params.append(("dc", self.spec.datacenter))
        if self.spec.query.get("stale"):
            params.append(("stale", ""))
        if last_index:
            params.append(("index", str(last_index)))
        status, headers, body = self._get(path, params)
        if status == 404 and missing_ok:
            data = None
        elif status != 200:
            raise WatchError(f"Unexpected response code: {status} ({body.decode('utf-8', 'replace')})")
        else:
            data = json.loads(body)
        try:
            index = int(headers.get("X-Consul-Index", ""))
        except ValueError as err:
            raise WatchError("Failed to parse X-Consul-Index") from err
        return index, decode_result(self.spec, data, last_index)

    def _run(self) -> None:
        last_index: int | None = None
        last_result: Any = None
        failures = 0
        while not self._stop.is_set():
            try:
                index, result = self.query(last_index)
            except WatchError as err:
                if self._stop.is_set():
                    break
                failures += 1
                last_index = None
                retry = min(self.timings.watch_backoff_base * failures**2, self.timings.watch_backoff_max)
                self.log.error("Watch errored: type=%s error=%s retry=%.1fs", self.spec.type, err, retry)
                self._stop.wait(retry)
                continue
            if self._stop.is_set():
                break
            failures = 0
            if last_index is not None and last_index == index:
                continue
            previous, last_index = last_index, index
            if previous is not None and result == last_result:
                continue
            last_result = result
            self.handler(index, go_json(result).encode() + b"\n")
        with self._conn_lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
