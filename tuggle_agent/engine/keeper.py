"""The keeper: makes this node agree with Consul -- reconcile the names the change-log
says changed (or all of KV: on a gap, periodically, on a keyprefix watch), act on events
(as hints checked against KV), retry failed sync prefetches, scrub copies, expire
tombstones.  The decisions themselves are pure functions in reconcile.py, the same for
one name as for all of them.
"""

from __future__ import annotations

import logging
import random
import threading
import time

from .. import metrics
from ..config import Config
from ..consul.agent import HolderService
from ..consul.client import ConsulUnavailable
from ..consul.kv import ObjectsKV
from ..errors import Deleted, TuggleError
from ..objects import changelog, syncfilter
from ..objects.metadata import ObjectMeta, SyncSpec
from ..objects.names import object_id as object_id_of
from .changes import Cursor, Position
from .copies import Copies
from .fetcher import Fetcher
from .reconcile import LocalCopy, evidence_of_removal, plan
from .store import LocalStore

log = logging.getLogger(__name__)

LIST_EVERY = 5.0  # seconds: the most often an unknown object id in an event makes us list all objects


class Keeper:
    def __init__(
        self, cfg: Config, node: str, kv: ObjectsKV, store: LocalStore, copies: Copies, service: HolderService
    ):
        self.cfg = cfg
        self.name = node
        self.kv = kv
        self.store = store
        self.copies = copies
        self.service = service
        self.fetcher: Fetcher  # set by attach(): the fetcher reports its failures to us
        self.bad_entries: list[tuple[str, str]] = []
        self._sync_retries: dict[str, int] = {}  # version -> failed sync prefetches
        self.stop = threading.Event()
        self.cursor = Cursor(store.state)
        self._changes_lock = threading.RLock()  # one change-log delivery at a time
        self._names: dict[str, str] = {}  # object id -> name, for events
        self._listed_at = -LIST_EVERY

    def attach(self, fetcher: Fetcher) -> None:
        self.fetcher = fetcher

    def sync_applies(self, sync: SyncSpec) -> bool:
        """The node/service/tag rules Consul applies to filtered events (Go RE2, match anywhere)."""
        return syncfilter.matches(sync.node, sync.service, sync.tag, self.name, self.cfg.namespace, self.service.tags)

    def reconcile(self, register: bool = False, position: Position | None = None) -> dict:
        """Make the node agree with all of KV: drop copies Consul proves gone, keep the rest
        (advertising those KV knows, keeping the others as orphans), prefetch sync targets.
        `position`: where the change-log stood before this call (read here when not given);
        once done, every change up to there is applied, and the cursor says so."""
        if position is None and self.cfg.kv_watch == "changes":
            position = self._log_position()
        result = self._reconcile(None, register)
        if position is not None:
            self.cursor.advance(position)
        return result

    def reconcile_names(self, names: set[str]) -> dict:
        """reconcile() for these names only: their metadata and tombstones are read one by
        one, and the same decisions (reconcile.plan) apply to them alone."""
        return self._reconcile(names)

    def _reconcile(self, names: set[str] | None, register: bool = False) -> dict:
        with self.store.lock:
            listed_at = time.time()
            bad: list[tuple[str, str]] | None = None
            if names is None:
                listing = self.kv.list()
                metas, bad = listing.metas, listing.bad
                tombstones = self.kv.tombstones()
            else:
                metas = {n: m for n in sorted(names) if (m := self.kv.get(n)) is not None}
                tombstones = {}
                for n in sorted(names):
                    tombstones.update(self.kv.tombstones(n))
            self._learn_names(metas)
            active = {d.meta.name: d for d in self.fetcher.snapshot() if names is None or d.meta.name in names}
            local: dict[str, LocalCopy] = {}
            for name in sorted(set(self.store.names()) | set(self.store.sidecar_names())):
                if name in active or (names is not None and name not in names):
                    continue  # a fetch in progress owns this name until its hooks ran and it tagged
                obj = self.store.get(name)
                if obj is not None:
                    local[name] = LocalCopy(name, obj.meta.version, obj.meta.sha256)
                elif self.store.sidecar_meta(name) is not None:
                    # Our sidecar, but the file is gone or no longer its size: not a copy.
                    self.copies.drop(name, self.store.sidecar_meta(name), "its file is missing or damaged")
            p = plan(
                local,
                metas,
                tombstones,
                fetching={n: d.meta.version for n, d in active.items()},
                fetching_before={n: d.meta.version for n, d in active.items() if d.started_at < listed_at},
                applies=self.sync_applies,
            )
            for name, why in p.drop:
                obj = self.store.get(name)
                self.copies.drop(name, obj.meta if obj else None, why)
            for name, why in p.cancel:
                self.fetcher.cancel(name)
                log.info("cancelled the fetch of %s: %s", name, why)
            orphans = {c.name: why for c, why in p.orphans}
            if names is not None:  # the other names' orphans stay what the last full reconcile found
                orphans = {n: w for n, w in self.copies.orphans.items() if n not in names} | orphans
            self.copies.set_orphans(orphans)
            for c, _ in p.orphans:
                self.copies.withdraw_version(c.name, c.version)
        if bad is not None:
            self._report_bad(bad)
        self.copies.advertise_kept(p.keep, start=register)  # a no-op (no write) when nothing is missing
        if not register and self.service.ensure_registered():
            log.warning("the local Consul agent had lost our service registration; registered again")
        started = [m.name for m in p.prefetch if self.fetcher.prefetch(m)]
        if names is None:
            self._expire_tombstones()
        return {
            "kept": len(p.keep),
            "dropped": [n for n, _ in p.drop],
            "orphans": sorted(orphans),
            "prefetching": started,
        }

    # -- the change-log -----------------------------------------------------
    def _log_position(self) -> Position | None:
        """Where the change-log stands now; None when it is absent, unreadable or malformed."""
        try:
            raw, _, created = self.kv.changes()
        except ConsulUnavailable as exc:
            log.debug("change-log not read: %s", exc)
            return None
        changes = changelog.parse(raw)
        return Position(created, changes[-1].seq) if changes else None

    def apply_changes(self, raw: bytes | None, created: int) -> dict:
        """A change-log watch delivery (the log's value and its key's CreateIndex): reconcile
        the names changed since the last applied entry; when that cannot be known (first
        run, another or restarted log, a gap, a malformed value), reconcile everything."""
        with self._changes_lock:
            changes = changelog.parse(raw)
            if changes is None:
                why = "no change-log in Consul" if raw is None else "the change-log is malformed"
                log.info("%s: reconciling with all of KV", why)
                return {"full_reconcile": why, **self.reconcile()}
            newest = Position(created, changes[-1].seq)
            at = self.cursor.load()
            todo = None if at is None or at.log != created else changelog.pending(changes, at.seq)
            if todo is None:
                why = "no earlier position" if at is None else "changes were missed since the last one applied"
                log.info("change-log at %d: %s; reconciling with all of KV", newest.seq, why)
                return {"full_reconcile": why, **self.reconcile(position=newest)}
            result = self.reconcile_names({c.name for c in todo}) if todo else {}
            self.cursor.advance(newest)
            return {"applied": [f"{c.seq} {c.op} {c.name}" for c in todo], **result}

    def _learn_names(self, metas: dict[str, ObjectMeta]) -> None:
        for name in metas:
            self._names[object_id_of(name)] = name

    def name_of(self, object_id: str) -> str | None:
        """The name of an object id (events carry ids: Go tuggle's format), from what this
        node has seen; on a miss, the change-log, then -- at most every LIST_EVERY
        seconds, so forged ids cannot make every event a full read -- the whole listing."""
        if object_id in self._names:
            return self._names[object_id]
        if self.cfg.kv_watch == "changes":
            raw, _, _ = self.kv.changes()
            for c in changelog.parse(raw) or []:
                self._names[object_id_of(c.name)] = c.name
            if object_id in self._names:
                return self._names[object_id]
        if time.monotonic() - self._listed_at >= LIST_EVERY:
            self._listed_at = time.monotonic()
            self._learn_names(self.kv.list().metas)
        return self._names.get(object_id)

    def full_reconcile_loop(self) -> None:
        """The safety net under the watch: reconcile with all of KV every
        full_reconcile_interval (+-10 %, so a fleet's nodes do not read KV in step)."""
        while not self.stop.wait(self.cfg.full_reconcile_interval * random.uniform(0.9, 1.1)):
            try:
                self.reconcile()
            except ConsulUnavailable as exc:
                log.warning("periodic full reconcile skipped: %s", exc)

    def _report_bad(self, bad: list[tuple[str, str]]) -> None:
        new = [b for b in bad if b not in self.bad_entries]
        for key, why in new:
            log.warning("ignoring KV entry %s: %s (fix or DELETE it; nothing is done with it)", key, why)
        self.bad_entries = list(bad)
        metrics.BAD_ENTRIES.set(len(bad))

    def _expire_tombstones(self) -> None:
        try:
            n = self.kv.expire_tombstones(time.time() - self.cfg.tombstone_ttl)
        except ConsulUnavailable as exc:
            log.debug("tombstone expiry skipped: %s", exc)
            return
        if n:
            log.info("expired %d tombstones older than tombstone_ttl", n)

    def on_event(self, verb: str, object_id: str, version: str) -> str:
        """A FETCH or DELETE event: a hint, checked against KV before anything is done.
        (Events can be forged or replayed by anyone who may fire them; KV decides.)"""
        if verb == "DELETE":
            names = {n for n in self.store.names() if object_id_of(n) == object_id}
            names |= {d.meta.name for d in self.fetcher.snapshot() if d.meta.id == object_id}
            if not names:
                return "not held here"
            out = []
            for name in sorted(names):
                current = self.kv.get(name)
                metas = {name: current} if current is not None else {}
                tomb = {(name, version)} if self.kv.has_tombstone(name, version) else set()
                why = evidence_of_removal(name, version, metas, tomb)
                if why is None:
                    out.append(f"{name}: kept (Consul still holds that version, or no tombstone proves its deletion)")
                elif self.drop_local(name, version, why):
                    out.append(f"removed {name}")
                else:
                    out.append(f"{name}: held here in another version: kept")
            return "; ".join(out)
        named = self.name_of(object_id)
        if named is None:
            return "unknown object id (no object of that id seen here): left to the KV watch"
        meta = self.kv.get(named)
        if meta is None or meta.version != version:
            return "stale: Consul no longer holds that version"
        local = self.store.get(meta.name)
        if local is not None and local.meta.version == meta.version:
            return f"prefetch of {meta.name} not needed: held here"
        if not self.fetcher.prefetch(meta):
            return f"prefetch of {meta.name} refused: no space (retried later)"
        return f"prefetch of {meta.name} started"

    def drop_local(self, name: str, version: str, why: str) -> bool:
        """Stop advertising and remove the local copy of `version` (cancel its fetch)."""
        cancelled = self.fetcher.cancel(name, version)
        with self.store.lock:
            local = self.store.get(name)
            if local is None or local.meta.version != version:
                return cancelled
            self.copies.drop(name, local.meta, why)
            return True

    def fetch_failed(self, meta: ObjectMeta, failure: TuggleError) -> None:
        """A sync prefetch must not give up on a transient failure (no passing holder
        yet, every source busy or gone): reconcile again later, backing off to a minute."""
        if meta.sync is None or not failure.transient or isinstance(failure, Deleted) or self.stop.is_set():
            return
        tries = self._sync_retries.get(meta.version, 0) + 1
        self._sync_retries[meta.version] = tries
        delay = min(60.0, 2.0**tries)
        log.info("will retry the sync of %s in %.0fs (attempt %d failed: %s)", meta.name, delay, tries, failure)
        timer = threading.Timer(delay, self._retry_sync)
        timer.daemon = True
        timer.start()

    def _retry_sync(self) -> None:
        try:
            self.reconcile()
        except ConsulUnavailable as exc:
            log.warning("retrying sync: %s", exc)

    def scrub_loop(self) -> None:
        while not self.stop.wait(self.cfg.scrub_interval):
            bad = self.copies.scrub()
            log.info("scrub: every local copy re-hashed; %d corrupt (removed and no longer advertised)", bad)
