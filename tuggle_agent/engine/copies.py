"""This node's complete copies as the cluster sees them: bytes on disk (the store) and
its holder key in Consul (and its tag, with holder_tags; consul/holders.py).  Every
change of either goes through here, so the two agree: a copy is advertised only once it
is committed, and stops being advertised before it is removed or as soon as it is found
missing or corrupt.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time

from .. import metrics
from ..config import Config
from ..consul.holders import HolderIndex
from ..objects.metadata import ObjectMeta
from .hooks import hook_env, run_hooks
from .store import LocalObject, LocalStore

log = logging.getLogger(__name__)


def sha256_of(path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class Copies:
    def __init__(self, cfg: Config, store: LocalStore, holders: HolderIndex, node: str):
        self.cfg = cfg
        self.store = store
        self.holders = holders
        self.node = node
        self.orphans: dict[str, str] = {}  # name -> why it is kept unadvertised
        self._verified_at: dict[str, float] = {}
        self._lock = threading.Lock()

    # -- advertising ------------------------------------------------------
    def advertise(self, meta: ObjectMeta) -> None:
        if not self.cfg.fetch_only:
            self.holders.advertise(meta.name, meta.version)

    def advertise_kept(self, kept: list[ObjectMeta], start: bool = False) -> None:
        """Reconcile's copies to advertise (a no-op for those already advertised); at
        start, exactly these (and the service is registered)."""
        copies = [] if self.cfg.fetch_only else [(m.name, m.version) for m in kept]
        if start:
            self.holders.advertise_only(copies)
        else:
            self.holders.advertise_all(copies)

    def withdraw(self, meta: ObjectMeta) -> None:
        self.withdraw_version(meta.name, meta.version)

    def withdraw_version(self, name: str, version: str) -> None:
        self.holders.withdraw(name, version)

    def advertised(self, meta: ObjectMeta) -> bool:
        return self.holders.advertised(meta.name, meta.version)

    # -- orphans ----------------------------------------------------------
    def set_orphans(self, found: dict[str, str]) -> None:
        """Record this reconcile's orphans; each new one is logged at WARNING once."""
        with self._lock:
            for name, why in found.items():
                if name not in self.orphans:
                    log.warning(
                        "keeping local copy of %s as an orphan: %s. Nothing was deleted; if the "
                        "object should exist, run `tuggle-agent adopt %s` to publish it again",
                        name,
                        why,
                        name,
                    )
            self.orphans = dict(found)
        metrics.ORPHANS.set(len(found))

    # -- removal ----------------------------------------------------------
    def drop(self, name: str, meta: ObjectMeta | None, why: str) -> None:
        """Stop advertising, then remove the copy (call with store.lock held)."""
        if meta is not None:
            self.withdraw(meta)
        path = self.store.path(name)
        self.store.remove(name)
        log.info("removed local copy of %s: %s", name, why)
        if meta is not None and self.cfg.hooks["post_delete"]:
            run_hooks("post_delete", self.cfg.hooks["post_delete"], meta, hook_env(meta, path, self.node))

    def quarantine(self, meta: ObjectMeta, why: str) -> None:
        """Our own copy went bad: stop advertising it and delete it; peers go elsewhere."""
        metrics.CORRUPT_COPIES.inc()
        with self.store.lock:
            local = self.store.get(meta.name)
            if local is not None and local.meta.version != meta.version:
                return
            log.error(
                "local copy of %s is corrupt: %s; removing it (it is fetched again on the next GET)", meta.name, why
            )
            self.drop(meta.name, meta, "its copy was corrupt")

    def missing(self, meta: ObjectMeta) -> None:
        """We were asked for a copy we advertise but no longer have: stop advertising at once."""
        if self.advertised(meta):
            log.error(
                "local copy of %s is missing or damaged in %s; no longer advertising it", meta.name, self.store.root
            )
            self.withdraw(meta)

    # -- integrity --------------------------------------------------------
    def verify(self, local: LocalObject) -> bool:
        """Re-hash a copy; quarantine it if it is corrupt.  True if intact."""
        digest = sha256_of(local.path)
        if digest != local.meta.sha256:
            self.quarantine(local.meta, f"SHA-256 is {digest}, expected {local.meta.sha256}")
            return False
        self.store.refresh_stat(local.meta.name)
        self._verified_at[local.meta.name] = time.monotonic()
        log.info("re-verified local copy of %s: intact", local.meta.name)
        return True

    def checked(self, name: str, version: str) -> LocalObject | None:
        """The intact local copy of this version, or None.  A copy touched since its commit
        (size, mtime or inode changed) is re-hashed first, so a corrupted file is never
        served with the original ETag."""
        local = self.store.get(name)
        if local is None:
            meta = self.store.sidecar_meta(name)
            if meta is not None and meta.version == version:
                self.missing(meta)  # sidecar says we had it: file gone or truncated
            return None
        if local.meta.version != version:
            return None
        if local.stat_changed() and not self.verify(local):
            return None
        return local

    def verify_later(self, name: str, min_interval: float = 60.0) -> bool:
        """Re-hash our copy in the background (at most once a minute per object)."""
        local = self.store.get(name)
        now = time.monotonic()
        if local is None or now - self._verified_at.get(name, -min_interval) < min_interval:
            return False
        self._verified_at[name] = now
        threading.Thread(target=self.verify, args=(local,), name=f"verify-{name}", daemon=True).start()
        return True

    def scrub(self) -> int:
        """Re-hash every copy (the periodic scrub); returns how many were corrupt."""
        bad = 0
        for name in self.store.names():
            local = self.store.get(name)
            if local is not None and not self.verify(local):
                bad += 1
        return bad
