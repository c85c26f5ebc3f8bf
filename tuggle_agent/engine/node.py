"""One tuggle-agent node: its Consul identity, local store, fetcher, and the
operations the HTTP front and the watch handlers call (upload, delete, drop,
prefetch, reconcile)."""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import threading
import time
from typing import BinaryIO

from .. import metrics
from ..config import Config
from ..consul.agent import HolderService
from ..consul.client import ConsulUnavailable, make_client
from ..consul.event import fire
from ..consul.health import HolderFinder
from ..consul.kv import ObjectsKV
from ..consul.relay import RelayRegistry
from ..consul.semaphore import Semaphore
from ..consul.session import RenewedSession
from .download import Download, DownloadFailed
from ..objects.events import parse
from .fetcher import FetchContext, Fetcher
from .hooks import hook_env, run_hooks
from ..objects.metadata import ObjectMeta, PieceList, SyncSpec, piece_size_for
from ..objects.names import check_name
from ..objects.names import object_id as object_id_of
from .progress import Progress
from .ratelimit import TokenBucket
from .store import LocalStore
from ..objects.verify import Digester
from ..watches.input import HandledEvents

log = logging.getLogger(__name__)


def sync_spec(node: str = "", service: str = "", tag: str = "") -> SyncSpec:
    return SyncSpec(node, service, tag, requested_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


class UploadError(Exception):
    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class Node:
    def __init__(self, config: Config):
        self.cfg = config
        self.client = make_client(config.consul_address, config.consul_token)
        ns = config.namespace
        self.kv = ObjectsKV(self.client, ns)
        self.finder = HolderFinder(self.client, ns)
        self.service = HolderService(self.client, ns, config.port, config.advertise_address,
                                     config.check_interval, config.check_timeout)
        self.store = LocalStore(config.data_dir)
        self.name = ""
        self.fetcher: Fetcher | None = None
        self.serve_bucket = TokenBucket(config.serve_rate)
        self._verified_at: dict[str, float] = {}
        self._sync_retries: dict[str, int] = {}  # version -> failed sync prefetches

    # -- start-up -------------------------------------------------------------
    def start(self) -> None:
        self.name = self._wait_for_consul(self.cfg.consul_start_timeout)
        removed = self.store.clean_temp()
        if removed:
            log.info("removed %d leftover temp files of an earlier run", removed)
        # Our sessions die with our HTTP check as well as with the node (see session.py).
        checks = ["serfHealth", f"service:{self.cfg.namespace}"]
        self.fetcher = Fetcher(FetchContext(
            config=self.cfg, store=self.store, kv=self.kv, finder=self.finder, node=self.name,
            session=lambda: RenewedSession(self.client, "tuggle-agent fetch", 15.0, "delete", checks),
            semaphore=lambda source, session: Semaphore(self.client, f"{self.cfg.namespace}.lock/{source}",
                                                        self.cfg.source_limit, session),
            relay=RelayRegistry(self.client, self.cfg.namespace),
            on_complete=self._fetched, on_failure=self._fetch_failed))
        self.reconcile(register=True)

    def _wait_for_consul(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        delay = 0.2
        while True:
            try:
                return self.service.node_name()
            except ConsulUnavailable as exc:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("%s Retrying in %.1fs.", exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def reconcile(self, register: bool = False) -> dict:
        """Make the node agree with KV: drop copies whose object is gone or changed,
        advertise the rest, and prefetch objects marked for sync on this node."""
        kept, dropped = set(), []
        with self.store.lock:
            # Read KV under the lock: an upload commits its file, then creates its key,
            # both under this lock; a listing taken before it would call the file debris.
            listed_at = time.time()
            metas = {m.name: m for m in self.kv.list()}
            for name in self.store.names() + self.store.orphan_sidecars():
                if self.fetcher and self.fetcher.active(name):
                    continue  # a fetch in progress owns this name until its hooks ran and it tagged
                local = self.store.get(name)
                meta = metas.get(name)
                if local is not None and meta is not None and local.meta.version == meta.version \
                        and local.meta.sha256 == meta.sha256:
                    kept.add(meta.id)
                    continue
                self._drop(name, local.meta if local else None,
                           "its object is gone from Consul" if meta is None else "Consul holds another version")
                dropped.append(name)
        if self.fetcher:
            for d in self.fetcher.snapshot():
                if d.started_at >= listed_at:
                    continue  # started after our listing: the listing can't judge it
                meta = metas.get(d.meta.name)
                if meta is None or meta.version != d.meta.version:
                    self.fetcher.cancel(d.meta.name)
                    dropped.append(d.meta.name)
        tags = set() if self.cfg.fetch_only else kept
        if register:
            self.service.register(tags)
        else:
            self.service.add(*tags)  # a no-op (no catalog write) when nothing is missing
            if self.service.ensure_registered():
                log.warning("the local Consul agent had lost our service registration; registered again")
        started = [m.name for m in metas.values() if m.sync and self.sync_applies(m.sync)
                   and m.id not in kept and self.prefetch(m) is not None]
        return {"kept": len(kept), "dropped": dropped, "prefetching": started}

    def sync_applies(self, sync: SyncSpec) -> bool:
        """The same node/service/tag rules Consul applies to filtered events: Go's
        regexp.MatchString, which matches anywhere in the string (re.search, not re.match)."""
        if sync.node and not re.search(sync.node, self.name):
            return False
        if sync.service:
            if not re.search(sync.service, self.cfg.namespace):
                return False
            if sync.tag and not any(re.search(sync.tag, t) for t in self.service.tags):
                return False
        return True

    # -- objects --------------------------------------------------------------
    def upload(self, name: str, body: BinaryIO, length: int | None, content_type: str,
               sync: SyncSpec | None = None) -> ObjectMeta:
        """Store a new object; with `sync`, marked for prefetch in the same KV write that
        creates it (one watch firing per node, not two) and announced by a FETCH event."""
        check_name(name)
        if self.kv.get(name) is not None:
            raise UploadError(f"{name} already exists; objects are immutable: DELETE it first or choose a new name", 409)
        piece = piece_size_for(length or 0) if length is not None else piece_size_for(self.cfg.max_upload_size)
        digester = Digester(piece)
        temp, f = self.store.temp_file(name, "upload")
        try:
            with f:
                progress = Progress(log, f"receiving {name}", length or 0, self.cfg.progress_interval)
                while True:
                    want = 1 << 20 if length is None else min(1 << 20, length - digester.size)
                    if want <= 0:
                        break
                    block = body.read(want)
                    if not block:
                        break
                    f.write(block)
                    digester.update(block)
                    progress.update(digester.size)
                if length is not None and digester.size < length:
                    raise UploadError(f"upload of {name} truncated: got {digester.size} of {length} bytes; nothing stored", 400)
                f.flush()
                os.fsync(f.fileno())
            sha, digests = digester.finish()
            meta = ObjectMeta(name=name, size=digester.size, sha256=sha, content_type=content_type,
                              piece_size=piece, sync=sync)
            with self.store.lock:
                self.store.commit(temp, meta, self.name)
                try:
                    created = self.kv.create(meta, PieceList(piece, digests))
                except ConsulUnavailable:
                    self.store.remove(name)
                    raise
                if not created:
                    self.store.remove(name)
                    raise UploadError(f"{name} already exists (created concurrently); nothing changed", 409)
            if not self.cfg.fetch_only:
                self.service.add(meta.id)
            metrics.UPLOADED_BYTES.inc(meta.size)
            log.info("stored %s: %s, sha256 %s", name, progress.summary(), sha)
            if sync is not None:
                fire(self.client, self.cfg.namespace, "FETCH", meta.version, meta.id,
                     node=sync.node, service=sync.service, tag=sync.tag)
            return meta
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise UploadError(f"no space left in {self.cfg.data_dir} for {name}; free space or raise the disk; nothing stored", 507) from None
            raise
        finally:
            temp.unlink(missing_ok=True)

    def delete(self, name: str) -> ObjectMeta | None:
        meta = self.kv.get(name)
        if meta is None:
            return None
        self.kv.delete(meta)
        event_id = fire(self.client, self.cfg.namespace, "DELETE", meta.version, meta.id)
        log.info("deleted %s (version %s) from Consul; DELETE event %s fired", name, meta.version, event_id)
        self.drop_local(name, meta.version)
        return meta

    def drop_local(self, name: str, version: str | None = None) -> bool:
        """Stop advertising and remove the local copy (of `version` only, if given)."""
        cancelled = False
        if self.fetcher:
            active = self.fetcher.active(name)
            cancelled = active is not None and (version is None or active.meta.version == version)
            if cancelled:
                self.fetcher.cancel(name)
        with self.store.lock:
            local = self.store.get(name)
            if local is None or (version is not None and local.meta.version != version):
                if local is None:
                    self.store.remove(name)  # debris without a valid sidecar
                return cancelled
            self._drop(name, local.meta, "it was deleted")
            return True

    def _drop(self, name: str, meta: ObjectMeta | None, why: str) -> None:
        if meta is not None:
            self.service.remove(meta.id)
        path = self.store.path(name)
        self.store.remove(name)
        log.info("removed local copy of %s: %s", name, why)
        if meta is not None and self.cfg.hooks["post_delete"]:
            run_hooks("post_delete", self.cfg.hooks["post_delete"], meta, hook_env(meta, path, self.name))

    def on_watch(self, data, kind: str) -> dict:
        """A Consul watch result (already classified): reconcile, or act on new events."""
        if kind == "kv":
            return {"reconciled": self.reconcile()}
        if kind != "events":
            return {}
        acted = {}
        with HandledEvents(self.store.state).locked() as seen:
            for raw in data:
                if raw.get("Name") != self.cfg.namespace:
                    continue
                ev = parse(raw)
                if ev is None:
                    log.warning("ignoring event %s: payload is not a tuggle FETCH/DELETE", raw.get("ID"))
                    continue
                if ev.event_id in seen:
                    log.debug("skipping %s event %s: handled before (Consul replays its buffer)", ev.verb, ev.event_id)
                    continue
                acted[ev.event_id] = f"{ev.verb}: " + self.on_event(ev.verb, ev.object_id, ev.version)
                log.info("acting on %s event %s: %s", ev.verb, ev.event_id, acted[ev.event_id])
                seen.append(ev.event_id)
        return {"events": acted}

    def on_event(self, verb: str, object_id: str, version: str) -> str:
        """A FETCH or DELETE event names an object by id and version (payloads are tiny)."""
        if verb == "DELETE":
            names = {n for n in self.store.names() if object_id_of(n) == object_id}
            if self.fetcher:
                names |= {d.meta.name for d in self.fetcher.snapshot() if d.meta.id == object_id}
            if not names:
                return "not held here"
            dropped = [n for n in sorted(names) if self.drop_local(n, version)]
            return f"removed {', '.join(dropped)}" if dropped else "held here in another version: kept"
        meta = next((m for m in self.kv.list() if m.id == object_id), None)
        if meta is None or meta.version != version:
            return "stale: Consul no longer holds that version"
        return f"prefetch of {meta.name} " + ("started" if self.prefetch(meta) else "not needed: held here")

    def prefetch(self, meta: ObjectMeta) -> Download | None:
        local = self.store.get(meta.name)
        if local is not None and local.meta.version == meta.version:
            return None
        assert self.fetcher is not None
        return self.fetcher.ensure(meta)

    def sync(self, name: str, node: str = "", service: str = "", tag: str = "") -> ObjectMeta | None:
        """Mark for sync in KV (durable) and fire FETCH (fast); filters are Consul's."""
        for _ in range(10):
            meta, index = self.kv.get_with_index(name)
            if meta is None:
                return None
            meta.sync = sync_spec(node, service, tag)
            if self.kv.update(meta, index):
                break
        else:
            raise ConsulUnavailable(f"could not mark {name} for sync: it kept changing under us")
        fire(self.client, self.cfg.namespace, "FETCH", meta.version, meta.id, node=node, service=service, tag=tag)
        return meta

    def _fetched(self, meta: ObjectMeta, source: str) -> None:
        self._sync_retries.pop(meta.version, None)
        hooks = self.cfg.hooks["post_download"]
        if hooks:
            path = self.store.path(meta.name)
            results = run_hooks("post_download", hooks, meta, hook_env(meta, path, self.name, source))
            failed = [r for r in results if not r.ok]
            self.store.set_status(meta.name, post_download="failed" if failed else "ok",
                                  post_download_error=failed[0].describe() if failed else "")
            if failed and self.cfg.post_download_failure == "discard":
                with self.store.lock:
                    self.store.remove(meta.name)
                self.service.remove(meta.id)
                log.warning("discarded %s after its post_download hook failed (post_download_failure: discard)", meta.name)
                return
        if not self.cfg.fetch_only:
            self.service.add(meta.id)

    def quarantine(self, meta: ObjectMeta, why: str) -> None:
        """Our own copy went bad: stop advertising it and delete it; peers go elsewhere."""
        with self.store.lock:
            local = self.store.get(meta.name)
            if local is not None and local.meta.version == meta.version:
                log.error("local copy of %s is corrupt: %s; removing it", meta.name, why)
                self._drop(meta.name, meta, "its copy was corrupt")

    def verify_later(self, name: str, min_interval: float = 60.0) -> bool:
        """Re-hash our copy in the background (at most once a minute per object)."""
        local = self.store.get(name)
        now = time.monotonic()
        if local is None or now - self._verified_at.get(name, -min_interval) < min_interval:
            return False
        self._verified_at[name] = now
        threading.Thread(target=self._verify, args=(local,), name=f"verify-{name}", daemon=True).start()
        return True

    def _verify(self, local) -> None:
        h = hashlib.sha256()
        with open(local.path, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
        if h.hexdigest() != local.meta.sha256:
            self.quarantine(local.meta, f"SHA-256 is {h.hexdigest()}, expected {local.meta.sha256}")
        else:
            log.info("re-verified local copy of %s: intact", local.meta.name)

    def status(self) -> dict:
        local = []
        for name in self.store.names():
            obj = self.store.get(name)
            if obj is not None:
                local.append({"name": name, "version": obj.meta.version, "size": obj.meta.size,
                              "sha256": obj.meta.sha256, "source": obj.source, "status": obj.status})
        fetching = []
        if self.fetcher:
            for d in self.fetcher.snapshot():
                fetching.append({"name": d.meta.name, "version": d.meta.version, "size": d.meta.size,
                                 "verified": d.verified, "source": d.source})
        return {"node": self.name, "fetch_only": self.cfg.fetch_only, "relay": self.cfg.relay,
                "served_to_peers": int(metrics.REGISTRY.get_sample_value("tuggle_served_to_peers_bytes_total") or 0), "objects": local, "fetching": fetching}

    def _fetch_failed(self, meta: ObjectMeta, failure: DownloadFailed) -> None:
        """A sync prefetch must not give up on a transient failure (no passing holder
        yet, every source busy or gone): reconcile again later, backing off to a minute."""
        if meta.sync is None or failure.status not in (404, 502, 503, 504, 507):
            return
        tries = self._sync_retries.get(meta.version, 0) + 1
        self._sync_retries[meta.version] = tries
        delay = min(60.0, 2.0 ** tries)
        log.info("will retry the sync of %s in %.0fs (attempt %d failed: %s)", meta.name, delay, tries, failure)
        timer = threading.Timer(delay, self._retry_sync)
        timer.daemon = True
        timer.start()

    def _retry_sync(self) -> None:
        try:
            self.reconcile()
        except ConsulUnavailable as exc:
            log.warning("retrying sync: %s", exc)

    def close(self) -> None:
        try:
            self.service.deregister()
        except ConsulUnavailable as exc:
            log.warning("%s", exc)
