"""The disk lifecycle of this node's copies: measure, evict, admit downloads.

The decisions are eviction.py's (a pure policy); this module gathers its inputs and
carries them out:

  measure   the agent's bytes in the data dir (copies, temp files, running fetches at
            their full size), the filesystem's free space, `cache.max_disk` resolved
  reads     last read time of each copy (client GET, peer serve), in memory, saved to
            `.tuggle/last-read.json` after each pass; a copy never read since the
            agent started counts from its file's atime/mtime.  Open readers are
            counted, and a copy being evicted takes no new reader.
  evict     periodically (EVICT_INTERVAL), after each completed fetch, and before a
            download: the policy's choices, each one re-checked under the store lock;
            its holder key is dropped first, Consul is asked once more whether
            `min_copies` other nodes still pass with it (two nodes evicting the same
            object at once both keep it), then the file goes (copies.drop).
  admit     before a fetch creates its temp file: refuse with NoSpace (507) when the
            object cannot fit even after eviction, saying how much is needed and what
            is pinned, instead of failing half-way.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .. import metrics
from ..config import Config
from ..consul.client import ConsulUnavailable
from ..consul.holders import HolderIndex
from ..consul.kv import ObjectsKV
from ..errors import NoSpace
from ..objects.metadata import ObjectMeta, SyncSpec
from .copies import Copies
from .download import Download
from .eviction import Copy, Limits, Plan, Usage, plan, quiet
from .store import LocalObject, LocalStore, _write_atomic

log = logging.getLogger(__name__)

EVICT_INTERVAL = 30.0
MiB = 2**20


class ReadFile(io.FileIO):
    """A local copy opened for a client: counted as a reader until it is closed."""

    def __init__(self, path: Path, release: Callable[[], None]):
        self._release: Callable[[], None] | None = release
        try:
            super().__init__(path, "rb")
        except BaseException:
            self._release = None
            release()
            raise

    def close(self) -> None:
        try:
            super().close()
        finally:
            release, self._release = getattr(self, "_release", None), None
            if release is not None:
                release()


class ReadTracker:
    """Last read times and open readers of local copies (by name)."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._readers: dict[str, int] = {}
        self._evicting: set[str] = set()
        self._dirty = False
        try:
            data = json.loads(path.read_text())
            self._last = {str(k): float(v) for k, v in data.items()} if isinstance(data, dict) else {}
        except (OSError, ValueError, TypeError):
            self._last = {}

    def begin(self, name: str) -> Callable[[], None] | None:
        """Count a reader of `name` (and record the read); None if the copy is being evicted.
        Returns the release, which is safe to call more than once."""
        with self._lock:
            if name in self._evicting:
                return None
            self._readers[name] = self._readers.get(name, 0) + 1
            self._last[name] = time.time()
            self._dirty = True
        done = threading.Event()

        def release() -> None:
            if done.is_set():
                return
            done.set()
            with self._lock:
                left = self._readers.get(name, 0) - 1
                if left > 0:
                    self._readers[name] = left
                else:
                    self._readers.pop(name, None)

        return release

    def readers(self, name: str) -> int:
        with self._lock:
            return self._readers.get(name, 0)

    def last_read(self, name: str, path: Path) -> float:
        with self._lock:
            t = self._last.get(name)
        if t is not None:
            return t
        try:
            st = path.stat()
        except OSError:
            return 0.0
        return max(st.st_atime, st.st_mtime)

    def claim(self, name: str) -> bool:
        """Mark `name` as being evicted, if nobody reads it; new readers are turned away."""
        with self._lock:
            if self._readers.get(name):
                return False
            self._evicting.add(name)
            return True

    def unclaim(self, name: str, evicted: bool) -> None:
        with self._lock:
            self._evicting.discard(name)
            if evicted and self._last.pop(name, None) is not None:
                self._dirty = True

    def save(self, held: set[str] | None = None) -> None:
        """Write the times if they changed; with `held`, forget names no longer held here."""
        with self._lock:
            if held is not None:
                gone = set(self._last) - held - set(self._readers)
                for name in gone:
                    del self._last[name]
                self._dirty = self._dirty or bool(gone)
            if not self._dirty:
                return
            data, self._dirty = dict(self._last), False
        try:
            _write_atomic(self.path, json.dumps(data).encode())
        except OSError as exc:
            log.warning("could not save last read times to %s: %s", self.path, exc)


class Disk:
    def __init__(
        self,
        cfg: Config,
        node: str,
        store: LocalStore,
        copies: Copies,
        kv: ObjectsKV,
        finder: HolderIndex,
        sync_applies: Callable[[SyncSpec], bool],
    ):
        self.cfg = cfg
        self.node = node
        self.store = store
        self.copies = copies
        self.kv = kv
        self.finder = finder
        self.sync_applies = sync_applies
        self.reads = ReadTracker(store.state / "last-read.json")
        self.fetching: Callable[[], list[Download]] = list  # set by attach()
        self._reserved: dict[str, tuple[str, int]] = {}  # name -> (version, size) of admitted fetches
        self._lock = threading.Lock()  # one pass (measure, plan, evict, reserve) at a time
        self.evictions = 0
        self.refusals = 0
        self.last: dict = {}

    def attach(self, fetching: Callable[[], list[Download]]) -> None:
        self.fetching = fetching

    # -- readers ----------------------------------------------------------
    def open_copy(self, name: str, path: Path) -> ReadFile | None:
        """Open a local copy for a client, counted as a reader; None if it is being evicted
        or already gone (the caller fetches it)."""
        release = self.reads.begin(name)
        if release is None:
            return None
        try:
            return ReadFile(path, release)
        except FileNotFoundError:
            return None

    # -- measuring --------------------------------------------------------
    def _usage(self, active: dict[str, Download]) -> tuple[Usage, Limits, dict[str, tuple[int, Path]]]:
        """Bytes used and free, the limits resolved, and the size of each file in the data dir."""
        files: dict[str, tuple[int, Path]] = {}
        for name in self.store.names():
            path = self.store.path(name)
            with contextlib.suppress(OSError):
                files[name] = (path.stat().st_size, path)
        on_disk = sum(size for size, _ in files.values())
        for p in self.store.tmp.iterdir():  # uploads, and fetches so far
            with contextlib.suppress(OSError):
                on_disk += p.stat().st_size
        # Admitted fetches count at their full size; what they have yet to write is not free.
        pending = 0
        for name, (version, size) in list(self._reserved.items()):
            d = active.get(name)
            done = self.store.get(name)
            if done is not None and done.meta.version == version:
                continue
            pending += size - (d.verified if d is not None and d.meta.version == version else 0)
        st = os.statvfs(self.store.root)
        total, avail = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
        fs_used = (st.f_blocks - st.f_bfree) * st.f_frsize
        limits = Limits(
            max_bytes=self.cfg.cache_max_disk.resolve(total, others=fs_used - on_disk),
            high=self.cfg.cache_high_watermark,
            low=self.cfg.cache_low_watermark,
            max_age=self.cfg.cache_max_age,
            min_copies=self.cfg.cache_min_copies,
            headroom=min(64 * MiB, total // 100),
        )
        return Usage(used=on_disk + pending, free=max(0, avail - pending)), limits, files

    def _copies(self, files: dict[str, tuple[int, Path]], active: dict[str, Download]) -> list[Copy]:
        """The copies as the policy sees them.  Raises ConsulUnavailable when KV cannot be listed."""
        listing = self.kv.list()
        copies = []
        for name, (size, path) in files.items():
            local = self.store.get(name)
            known = listing.metas.get(name)
            copies.append(
                Copy(
                    name,
                    size,
                    self.reads.last_read(name, path),
                    pinned=bool(known and known.sync and self.sync_applies(known.sync)),
                    in_use=name in active or self._admitted(name, local) or self.reads.readers(name) > 0,
                    orphan=local is None or known is None or known.version != local.meta.version,
                )
            )
        return copies

    def _admitted(self, name: str, local: LocalObject | None) -> bool:
        """A fetch of another version than the local copy was admitted and is about to start."""
        version, _ = self._reserved.get(name, (None, 0))
        return version is not None and (local is None or local.meta.version != version)

    def _holders(self, name: str) -> int:
        """Other passing holders of the version held here (0 if none is held)."""
        local = self.store.get(name)
        return len(self.finder.holders(name, local.meta.version)) if local is not None else 0

    # -- evicting ---------------------------------------------------------
    def evict(self, trigger: str = "periodic", need: ObjectMeta | None = None) -> Plan | None:
        """One pass; with `need`, admit that download (raises NoSpace) and reserve its space."""
        with self._lock:
            active = {d.meta.name: d for d in self.fetching()}
            usage, limits, files = self._usage(active)
            self._report(usage, limits)
            if quiet(usage, limits, need.size if need else 0):
                if need is not None:
                    self._reserve(need, usage, limits)
                return None
            try:
                p = plan(
                    self._copies(files, active), usage, limits, time.time(), self._holders, need.size if need else 0
                )
            except ConsulUnavailable as exc:
                # No evidence that any copy is unneeded: evict nothing; let the download try.
                log.warning("disk: no eviction (%s): %s", trigger, exc)
                if need is not None:
                    self._reserve(need, usage, limits)
                return None
            freed = 0
            for c, reason in p.evict:
                if self._evict_one(c, reason, limits):
                    freed += c.size
            self._report(usage, limits, freed)
            if need is not None:
                if p.refused is not None:
                    self.refusals += 1
                    metrics.FETCH_REFUSALS.inc()
                    msg = (
                        f"no space for {need.name} in {self.store.root}: {p.refused}. "
                        "Free space, raise cache.max_disk, or let other nodes hold more copies"
                    )
                    log.error("refused the download of %s: %s", need.name, msg)
                    raise NoSpace(msg)
                self._reserve(need, usage, limits, freed)
        self.reads.save()
        return p

    def _report(self, usage: Usage, limits: Limits, freed: int = 0, reserved: int = 0) -> None:
        used = usage.used - freed + reserved
        self.last = {
            "used": used,
            "max": limits.max_bytes,
            "high": limits.high_bytes,
            "low": limits.low_bytes,
            "free": max(0, usage.free + freed - reserved),
        }
        metrics.DISK_USED.set(used)

    def _reserve(self, need: ObjectMeta, usage: Usage, limits: Limits, freed: int = 0) -> None:
        self._reserved[need.name] = (need.version, need.size)
        self._report(usage, limits, freed, need.size)

    def _evict_one(self, c: Copy, reason: str, limits: Limits) -> bool:
        with self.store.lock:
            local = self.store.get(c.name)
            if local is None or any(d.meta.name == c.name for d in self.fetching()) or self._admitted(c.name, local):
                return False
            if not self.reads.claim(c.name):
                return False
            evicted = False
            try:
                meta = local.meta
                self.copies.withdraw(meta)
                others = self.finder.holders(meta.name, meta.version)
                if len(others) < limits.min_copies:
                    self.copies.advertise(meta)
                    log.info(
                        "not evicting %s: only %d other passing holders once untagged (min_copies %d)",
                        c.name,
                        len(others),
                        limits.min_copies,
                    )
                    return False
                why = (
                    f"evicted ({reason}: not read for {time.time() - c.last_read:.0f}s, {c.size} bytes; "
                    f"held by {', '.join(sorted(h.node for h in others))}; fetched again on the next GET)"
                )
                self.copies.drop(c.name, meta, why)
                evicted = True
            except ConsulUnavailable as exc:
                log.warning("not evicting %s: %s", c.name, exc)
                with contextlib.suppress(ConsulUnavailable):
                    self.copies.advertise(local.meta)
                return False
            finally:
                self.reads.unclaim(c.name, evicted)
        self.evictions += 1
        metrics.EVICTIONS.labels(reason).inc()
        return True

    # -- hooks for the fetcher --------------------------------------------
    def admit(self, meta: ObjectMeta) -> None:
        """Before a fetch creates its temp file: make room or raise NoSpace."""
        self.evict("download", need=meta)

    def fetch_ended(self, meta: ObjectMeta) -> None:
        with self._lock:
            if self._reserved.get(meta.name, (None,))[0] == meta.version:
                del self._reserved[meta.name]
        threading.Thread(target=self._pass, args=("after fetch",), name="evict", daemon=True).start()

    def _pass(self, trigger: str) -> None:
        try:
            self.evict(trigger)
        except Exception:
            log.exception("disk: eviction pass (%s) failed", trigger)
        self.reads.save(set(self.store.names()))

    def loop(self, stop: threading.Event) -> None:
        while not stop.wait(EVICT_INTERVAL):
            self._pass("periodic")

    def status(self) -> dict:
        """Measured now (no eviction, no Consul request, and not waiting for a pass)."""
        usage, limits, _ = self._usage({d.meta.name: d for d in self.fetching()})
        self._report(usage, limits)
        return {**self.last, "evictions": self.evictions, "refusals": self.refusals}
