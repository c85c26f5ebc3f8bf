"""The holder index: which nodes hold a verified, complete copy of an object version.

Default layout: one KV key per copy, `<ns>.holders/<name>/<version>/<node>`, whose value
is where to fetch it (`{"address": ..., "port": ...}`), acquired by this node's *holder
session*.  That session is bound to the node's `serfHealth` and to the tuggle service's
own HTTP check, with behaviour `delete`: when the node dies or its check goes critical,
Consul deletes every holder key of the node -- which is what "passing holder" meant with
the Go tuggle's service tags.  Finding the holders of one object reads only that
version's prefix: O(its holders) bytes, whatever else the namespace holds, where a
tag lookup returns every holder's service with one tag per object it holds (O(N*M)).

Invariants:
- a holder key is written only with `?acquire` of the current holder session (or the
  `lock` verb of a `/v1/txn` transaction, TXN_OPS keys per request: a node holding M
  copies writes its keys with M/64 requests at start and after a session change), and
  only while the copy is in `_held`; withdrawing deletes it first, so a removed copy is never
  left advertised by us (a Consul failure then raises, and the caller keeps the copy);
- a new session (first start, or after Consul invalidated the last one) is created only
  once the service check passes (Consul refuses a session bound to a critical check),
  after destroying any earlier holder session of this node (a previous process killed
  and restarted within one check interval left its session and keys alive), and then
  every held copy is written again;
- everything read back is untrusted: a key is used only when it is held by a session,
  names a node and has a valid `{"address", "port"}` value (parse_located); anything
  else is skipped, never raised;
- with `holder_tags` (clusters that mix in Go tuggle nodes) the service is also tagged
  with each held object's id, and lookups also ask `health/service/<ns>?tag=<id>&passing`,
  so Go nodes' copies are found and Go nodes find ours.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import consul
import requests

from ..objects.names import object_id
from .agent import HolderService
from .client import ConsulUnavailable, consul_errors
from .health import Coordinates, Holder
from .keys import Keys

log = logging.getLogger(__name__)

SESSION_NAME = "tuggle-agent holders"
MAX_VALUE = 512  # bytes of a holder or relay value; ours are ~40
_ADDRESS = re.compile(r"^[A-Za-z0-9._:%-]{1,253}$")  # IPv4, IPv6 (with zone), DNS name
MAX_NODE = 256
# Holder keys written per `PUT /v1/txn`: Consul accepts 128 ops per transaction since 1.7
# and 64 before; 64 works on every version and already turns M writes into M/64 requests.
TXN_OPS = 64
MAX_TXN_ERRORS = 8  # of a 409 answer's Errors, the ones worth a log line


@dataclass(frozen=True)
class Located:
    """A held key: which node, where to reach it, and the key's CreateIndex (its rank)."""

    node: str
    address: str
    port: int
    rank: int

    def holder(self) -> Holder:
        return Holder(self.node, self.address, self.port)


def location_value(address: str, port: int) -> bytes:
    return json.dumps({"address": address, "port": port}, separators=(",", ":")).encode()


def parse_location(value: object) -> tuple[str, int] | None:
    """(address, port) of a holder or relay value, or None if it is not one."""
    if not isinstance(value, (bytes, str)) or not value or len(value) > MAX_VALUE:
        return None
    try:
        data = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    address, port = data.get("address"), data.get("port")
    if not isinstance(address, str) or not _ADDRESS.match(address):
        return None
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        return None
    return address, port


def valid_node(node: str) -> bool:
    return 0 < len(node) <= MAX_NODE and "/" not in node and node.isprintable() and not any(c.isspace() for c in node)


def parse_located(entries: object, prefix: str) -> list[Located]:
    """The usable entries of a recursive read of `prefix` (`.../<version>/`), earliest
    written first: held by a session, one key level below the prefix, a valid value."""
    out = []
    for e in entries if isinstance(entries, list) else []:
        if not isinstance(e, dict):
            continue
        key, session, rank = e.get("Key"), e.get("Session"), e.get("CreateIndex")
        if not isinstance(key, str) or not key.startswith(prefix) or not isinstance(session, str) or not session:
            continue
        node = key[len(prefix) :]
        where = parse_location(e.get("Value"))
        if not valid_node(node) or where is None or not isinstance(rank, int) or isinstance(rank, bool):
            continue
        out.append(Located(node, where[0], where[1], rank))
    return sorted(out, key=lambda h: h.rank)


def holdings(entries: object, root: str) -> dict[tuple[str, str], set[str]]:
    """A recursive read of `<root>` (every object's holder keys) as (name, version) ->
    holder nodes, with parse_located's checks on each key."""
    out: dict[tuple[str, str], set[str]] = {}
    for e in entries if isinstance(entries, list) else []:
        key = e.get("Key") if isinstance(e, dict) else None
        parts = key[len(root) :].split("/") if isinstance(key, str) and key.startswith(root) else []
        if len(parts) == 3 and parts[0] and parts[1]:
            for h in parse_located([e], f"{root}{parts[0]}/{parts[1]}/"):
                out.setdefault((parts[0], parts[1]), set()).add(h.node)
    return out


def batches(items: Sequence[tuple[str, str]], size: int = TXN_OPS) -> list[list[tuple[str, str]]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def lock_ops(keys: Iterable[str], value: bytes, session: str) -> list[dict]:
    """A transaction acquiring each key with `session` (the KV endpoint's ?acquire)."""
    encoded = base64.b64encode(value).decode("ascii")
    return [{"KV": {"Verb": "lock", "Key": k, "Value": encoded, "Session": session}} for k in keys]


def txn_errors(body: object) -> list[tuple[int, str]]:
    """(OpIndex, What) of a 409 answer of /v1/txn (the transaction was rolled back);
    whatever is not such a pair is left out, at most MAX_TXN_ERRORS, texts cut short."""
    try:
        data = json.loads(body) if isinstance(body, (bytes, str)) else None
    except (ValueError, UnicodeDecodeError):
        return []
    errors = data.get("Errors") if isinstance(data, dict) else None
    out = []
    for e in errors if isinstance(errors, list) else []:
        i, what = (e.get("OpIndex"), e.get("What")) if isinstance(e, dict) else (None, None)
        if isinstance(i, int) and not isinstance(i, bool) and i >= 0 and isinstance(what, str):
            out.append((i, what[:200]))
            if len(out) == MAX_TXN_ERRORS:
                break
    return out


def _answer(response) -> tuple[int, str]:
    """py-consul callback: the status and body as they are (its CB.json raises on 409,
    losing the Errors list)."""
    return response.code, response.body


def _tagged(entries: object) -> list[Holder]:
    """Holders from health/service rows (the Go tuggle layout)."""
    out = []
    for e in entries if isinstance(entries, list) else []:
        try:
            node, svc = e["Node"], e["Service"]
            address = svc.get("Address") or node["Address"]
            out.append(Holder(str(node["Node"]), str(address), int(svc["Port"])))
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
    return out


class HolderIndex:
    """This node's advertised copies (writes) and anyone's holders (reads)."""

    def __init__(
        self,
        client: consul.Consul,
        keys: Keys,
        service: HolderService,
        node: str,
        address: str,
        port: int,
        tags: bool = False,
        watch_client: consul.Consul | None = None,
    ):
        self.c = client
        self.keys = keys
        self.service = service
        self.node = node
        self.value = location_value(address, port)
        self.tags = tags
        # The session watch blocks for a minute: it needs a client whose timeout is longer.
        self.watch = watch_client or client
        self.coordinates = Coordinates(client)
        self._held: set[tuple[str, str]] = set()
        self._written: set[tuple[str, str]] = set()
        self._sid: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- this node's copies -----------------------------------------------
    def advertise(self, name: str, version: str) -> None:
        """Advertise a committed copy.  The key is written now if the session exists, or
        when it does; a failed write is retried by the next advertise/advertise_all."""
        with self._lock:
            self._held.add((name, version))
            self._write((name, version))
        if self.tags:
            self.service.add(object_id(name))

    def advertise_all(self, copies: Iterable[tuple[str, str]]) -> None:
        """advertise() each; costs nothing for copies already written (reconcile's call)."""
        copies = list(copies)
        with self._lock:
            self._held.update(copies)
            self._write_many(copies)
        if self.tags:
            self.service.add(*(object_id(n) for n, _ in copies))

    def advertise_only(self, copies: Iterable[tuple[str, str]]) -> None:
        """At start: these are all the copies this node advertises; (re)register the service."""
        copies = set(copies)
        with self._lock:
            self._held = copies
            self._write_many(sorted(copies))
        self.service.register({object_id(n) for n, _ in copies} if self.tags else set())

    def withdraw(self, name: str, version: str) -> None:
        """Stop advertising; raises ConsulUnavailable if the key may still be there."""
        with self._lock:
            if (name, version) not in self._held | self._written:
                return  # not advertised: nothing to delete (reconcile withdraws every orphan)
            self._held.discard((name, version))
            if self._sid is not None:
                try:
                    with consul_errors(self.c, f"withdrawing holder key of {name}"):
                        self.c.kv.delete(self.keys.holder(name, version, self.node))
                except ConsulUnavailable:
                    self._held.add((name, version))
                    raise
            self._written.discard((name, version))
        if self.tags and not any(n == name for n, _ in self.held()):
            self.service.remove(object_id(name))

    def advertised(self, name: str, version: str) -> bool:
        with self._lock:
            return (name, version) in self._held

    def advertising(self) -> bool:
        """The holder session exists and every held copy's key is written."""
        with self._lock:
            return self._sid is not None and self._held <= self._written

    def held(self) -> set[tuple[str, str]]:
        with self._lock:
            return set(self._held)

    def _write(self, copy: tuple[str, str]) -> None:
        """Write one held key with the session (call with _lock held); never raises."""
        if self._sid is None or copy in self._written:
            return
        key = self.keys.holder(copy[0], copy[1], self.node)
        try:
            ok = self.c.kv.put(key, self.value, acquire=self._sid)
        except (requests.exceptions.RequestException, consul.ConsulException) as exc:
            log.warning("could not write holder key %s (%s); retried on the next reconcile", key, exc)
            return
        if ok:
            self._written.add(copy)
        else:  # locked by another session: not ours to take over
            log.warning("holder key %s is locked by another session; not advertised there", key)

    def _write_many(self, copies: Iterable[tuple[str, str]]) -> bool:
        """Write the held keys not yet written, TXN_OPS per transaction (call with _lock
        held); never raises.  False when Consul could not be reached: the rest would
        fail alike, and the next reconcile (or session) writes them."""
        todo = [c for c in dict.fromkeys(copies) if c in self._held and c not in self._written]
        return all(self._write_batch(batch) for batch in batches(todo))

    def _write_batch(self, batch: list[tuple[str, str]]) -> bool:
        """One transaction acquiring every key of `batch` with the session (call with
        _lock held).  A key locked by another session fails its lock op and Consul rolls
        the whole transaction back (409): the batch is then written key by key, so the
        others still get written and the locked one is logged as before.  False when
        Consul could not be reached."""
        if self._sid is None:
            return False
        if len(batch) == 1:
            self._write(batch[0])
            return True
        keys = [self.keys.holder(n, v, self.node) for n, v in batch]
        payload = json.dumps(lock_ops(keys, self.value, self._sid))
        try:
            code, body = self.c.http.put(_answer, "/v1/txn", data=payload, headers=self.c.prepare_headers())
        except (requests.exceptions.RequestException, consul.ConsulException) as exc:
            log.warning("could not write %d holder keys (%s); retried on the next reconcile", len(batch), exc)
            return False
        if code == 200:
            self._written.update(batch)
            return True
        if code >= 500:
            log.warning(
                "writing %d holder keys: Consul answered %s %s; retried on the next reconcile",
                len(batch),
                code,
                str(body)[:200],
            )
            return False
        if code == 409:
            log.debug("holder key transaction rolled back %s; writing its keys one by one", txn_errors(body))
        else:  # refused as a whole (413/400 from something in between?): the plain KV endpoint still works
            log.warning("holder key transaction refused: %s %s; writing its keys one by one", code, str(body)[:200])
        for copy in batch:
            self._write(copy)
        return True

    # -- the holder session -----------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._keep_session, name="holder-session", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Leave: destroying the session deletes our holder keys at once."""
        self._stop.set()
        with self._lock:
            sid, self._sid = self._sid, None
            self._written.clear()
        if sid is not None:
            try:
                self.c.session.destroy(sid)
            except (requests.exceptions.RequestException, consul.ConsulException) as exc:
                log.warning("destroying the holder session failed (%s); its check ends it", exc)

    def _keep_session(self) -> None:
        delay, index = 0.1, None
        while not self._stop.is_set():
            try:
                if self._sid is None:
                    if not self._check_passing():
                        self._stop.wait(delay)
                        delay = min(delay * 1.5, 0.5)  # an agent-local read: cheap
                        continue
                    self._open_session()
                    delay, index = 0.1, None
                    continue
                new_index, info = self.watch.session.info(self._sid, index=index, wait="60s")
                if self._stop.is_set():
                    return
                if not info:
                    with self._lock:
                        self._sid = None
                        self._written.clear()
                    log.warning(
                        "holder session ended (this node or its tuggle check went critical, so Consul "
                        "deleted its holder keys); advertising again once the check passes"
                    )
                    continue
                index = None if index is not None and int(new_index) < int(index) else new_index
            except (ConsulUnavailable, requests.exceptions.RequestException, consul.ConsulException) as exc:
                log.warning("holder session: %s; retrying in %.0fs", exc, max(delay, 1.0))
                index = None
                self._stop.wait(max(delay, 1.0))
                delay = min(delay * 2, 5.0)  # the keys are missing until we are back

    def _check_passing(self) -> bool:
        """Our tuggle service check, as the local agent sees it (no server request)."""
        checks = self.c.agent.checks()
        check = (checks or {}).get(f"service:{self.keys.ns}") or {}
        return check.get("Status") == "passing"

    def _open_session(self) -> None:
        name = f"{SESSION_NAME} ({self.keys.ns})"
        with consul_errors(self.c, "creating the holder session"):
            _, sessions = self.c.session.node(self.node)
            for s in sessions or []:
                if isinstance(s, dict) and s.get("Name") == name and isinstance(s.get("ID"), str):
                    self.c.session.destroy(s["ID"])  # an earlier process's: its keys go with it
            sid = self.c.session.create(
                name=name,
                checks=["serfHealth", f"service:{self.keys.ns}"],
                behavior="delete",
                lock_delay=0,  # our keys are re-acquired by the next session at once
            )
        with self._lock:
            if self._stop.is_set():
                self.watch.session.destroy(sid)
                return
            self._sid = sid
            self._written.clear()
            held = sorted(self._held)
        # A batch at a time, so that advertise/withdraw calls are not held up for all M keys.
        for batch in batches(held):
            with self._lock:
                if self._sid != sid or not self._write_many(batch):
                    return
        log.info("holder session %s created; %d holder keys written", sid[:8], len(held))

    # -- anyone's holders -------------------------------------------------
    def holders_index(
        self, name: str, version: str, index: str | None = None, wait: str | None = None
    ) -> tuple[str | None, list[Holder]]:
        """Holders of this version other than this node, nearest first, with the index to
        block on (with `index`, a blocking query that returns when the list changes or
        after `wait`).  A stale read: a holder that left since is a source that fails."""
        prefix = self.keys.holders_prefix(name, version)
        with consul_errors(self.c, f"looking up holders of {name}"):
            index, entries = self.c.kv.get(prefix, recurse=True, index=index, wait=wait, consistency="stale")
        found = [h.holder() for h in parse_located(entries, prefix)]
        if self.tags:
            found += self._tag_holders(name)
        return index, self.coordinates.nearest(self.node, self._others(found))

    def holders(self, name: str, version: str) -> list[Holder]:
        """Holders of this version other than this node, from the servers' current state
        (not stale: eviction counts on them to keep min_copies)."""
        return self._others(self._all(name, version, consistency="default"))

    def nodes_of(self, name: str, version: str) -> set[str]:
        """Every node holding this version, this one included (?status)."""
        return {h.node for h in self._all(name, version, consistency="default")}

    def all_nodes(self, versions: Iterable[tuple[str, str]]) -> dict[str, set[str]]:
        """Holder nodes of each (name, version), by name: one read of `<ns>.holders/`,
        O(copies in the cluster) -- an operator's call (GET /, the console)."""
        root = self.keys.holders_root
        with consul_errors(self.c, "listing holders"):
            _, entries = self.c.kv.get(root, recurse=True)
        by_object = holdings(entries, root)
        out = {name: set(by_object.get((name, version), ())) for name, version in versions}
        if self.tags and out:
            ids = {object_id(n): n for n in out}
            with consul_errors(self.c, f"reading the tags of service {self.keys.ns}"):
                _, rows = self.c.health.service(self.keys.ns, passing=True)
            for e in rows or []:
                for tag in (e.get("Service") or {}).get("Tags") or []:
                    if tag in ids:
                        out[ids[tag]].add(str((e.get("Node") or {}).get("Node", "")))
        return out

    def _all(self, name: str, version: str, consistency: str) -> list[Holder]:
        prefix = self.keys.holders_prefix(name, version)
        with consul_errors(self.c, f"looking up holders of {name}"):
            _, entries = self.c.kv.get(prefix, recurse=True, consistency=consistency)
        found = [h.holder() for h in parse_located(entries, prefix)]
        return found + self._tag_holders(name) if self.tags else found

    def _tag_holders(self, name: str) -> list[Holder]:
        with consul_errors(self.c, f"looking up tagged holders of {name}"):
            _, entries = self.c.health.service(self.keys.ns, tag=object_id(name), passing=True)
        return _tagged(entries)

    def _others(self, found: list[Holder]) -> list[Holder]:
        """Without this node, one entry per node (the first: keys before tags)."""
        seen = {self.node}
        out = []
        for h in found:
            if h.node not in seen:
                seen.add(h.node)
                out.append(h)
        return out
