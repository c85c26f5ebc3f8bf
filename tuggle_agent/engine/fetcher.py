"""Fetching an object from the cluster: nearest holder, per-source slots, verified pieces.

One fetch per object per node (single flight): concurrent GETs and prefetches of
the same object share one Download.  Different objects fetch in parallel.  Each
fetch walks holders nearest-first (random among the `nearest` closest), takes a
slot of the source's Consul semaphore so no source feeds more than
`max_fetch_per_source` fetchers cluster-wide, and pulls with HTTP Range from the
first byte not yet verified, so a source that dies, stalls or lies costs only the
piece in flight.  The whole fetch is bounded by `fetch_timeout`.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import threading
import time
from dataclasses import dataclass
from typing import Callable

import requests
import urllib3

from .. import metrics
from ..config import Config
from ..consul.client import ConsulUnavailable
from ..consul.health import Holder, HolderFinder
from ..consul.kv import Edge, ObjectsKV
from ..consul.relay import RelayRegistry
from ..consul.semaphore import Semaphore
from ..consul.session import RenewedSession
from .download import Download, DownloadFailed
from .hooks import hook_env, run_hooks
from ..objects.metadata import ObjectMeta, PieceList
from .progress import Progress
from .ratelimit import TokenBucket
from .store import LocalStore
from ..objects.verify import PieceMismatch, Verifier

log = logging.getLogger(__name__)

INTERNAL_HEADER = "X-Tuggle-Internal"
CHUNK = 64 * 1024  # network reads: small, so verified pieces are forwarded without delay


class SourceError(Exception):
    """This holder could not give us (more) good bytes; try another."""


class CorruptSource(SourceError):
    pass


@dataclass
class FetchContext:
    """What a fetch needs from the node: Consul pieces, identity, policy."""
    config: Config
    store: LocalStore
    kv: ObjectsKV
    finder: HolderFinder
    node: str
    session: Callable[[], RenewedSession]     # one per fetch: semaphore slots, relay entry
    semaphore: Callable[[str, RenewedSession], Semaphore]
    relay: RelayRegistry
    on_complete: Callable[[ObjectMeta, str], None]  # tag as holder, record edge, ...
    on_failure: Callable[[ObjectMeta, DownloadFailed], None]


class Fetcher:
    def __init__(self, ctx: FetchContext):
        self.ctx = ctx
        self.cfg = ctx.config
        self.bucket = TokenBucket(self.cfg.fetch_rate)
        self._active: dict[str, Download] = {}
        self._lock = threading.Lock()
        self._http = requests.Session()

    def active(self, name: str) -> Download | None:
        with self._lock:
            return self._active.get(name)

    def snapshot(self) -> list[Download]:
        with self._lock:
            return list(self._active.values())

    def ensure(self, meta: ObjectMeta) -> Download:
        """The running fetch of this exact object version, or a new one."""
        with self._lock:
            d = self._active.get(meta.name)
            if d is not None and d.meta.version == meta.version and not d.done:
                return d
            temp, f = self.ctx.store.temp_file(meta.name, "fetch")
            d = Download(meta, temp)
            self._active[meta.name] = d
        threading.Thread(target=self._run, args=(d, f), name=f"fetch-{meta.name}", daemon=True).start()
        return d

    def cancel(self, name: str) -> None:
        """A DELETE arrived: the running fetch must not land the old copy."""
        with self._lock:
            d = self._active.get(name)
        if d is not None:
            d.cancelled = True

    # -- the fetch thread -------------------------------------------------
    def _run(self, d: Download, f) -> None:
        meta = d.meta
        metrics.ACTIVE_FETCHES.inc()
        try:
            with f:
                self._pre_hooks(meta)
                pieces = self.ctx.kv.pieces(meta)
                if pieces is None:
                    raise DownloadFailed(f"{meta.name}: piece digests missing in Consul KV; it was deleted or replaced", 404)
                self._pull_all(d, f, pieces)
                f.flush()
                os.fsync(f.fileno())
            with self.ctx.store.lock:
                self._check_cancelled(d)
                current = self.ctx.kv.get(meta.name)
                if current is None or current.version != meta.version:
                    raise DownloadFailed(f"{meta.name} was deleted or replaced during the fetch", 404)
                self.ctx.store.commit(d.temp_path, meta, d.source)
            d.finish()
            metrics.FETCHES.labels("ok").inc()
            metrics.FETCH_SECONDS.observe(time.time() - d.started_at)
            log.info("fetched %s (%d bytes) from %s: verified sha256 %s", meta.name, meta.size, d.source, meta.sha256[:16])
            self.ctx.on_complete(meta, d.source)
            self.ctx.kv.add_edge(meta.name, Edge(d.source, self.ctx.node, d.started_at, time.time(),
                                                 time.time() - d.started_at))
        except Exception as exc:  # never leave readers waiting on a dead thread
            failure = self._failure(meta, exc)
            log.error("fetch of %s failed: %s", meta.name, failure)
            metrics.FETCHES.labels(str(failure.status)).inc()
            d.finish(failure)
            self.ctx.on_failure(meta, failure)
        finally:
            if d.relay is not None:
                d.relay.withdraw()  # after the holder tag: peers always find us one way or the other
            if d.session is not None:
                d.session.close()
            d.temp_path.unlink(missing_ok=True)
            metrics.ACTIVE_FETCHES.dec()
            with self._lock:
                if self._active.get(meta.name) is d:
                    del self._active[meta.name]

    def _failure(self, meta: ObjectMeta, exc: Exception) -> DownloadFailed:
        """The HTTP answer for a failed fetch, with what the operator can do about it."""
        if isinstance(exc, DownloadFailed):
            return exc
        if isinstance(exc, ConsulUnavailable):
            return DownloadFailed(str(exc), 503)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return DownloadFailed(f"no space left in {self.cfg.data_dir} for {meta.name}: free space there; "
                                  "the next GET or sync retries", 507)
        log.exception("fetch of %s failed unexpectedly", meta.name)
        return DownloadFailed(f"internal error: {exc}", 500)

    def _pre_hooks(self, meta: ObjectMeta) -> None:
        hooks = self.cfg.hooks["pre_download"]
        if not hooks:
            return
        env = hook_env(meta, self.ctx.store.path(meta.name), self.ctx.node)
        for r in run_hooks("pre_download", hooks, meta, env):
            if not r.ok:
                raise DownloadFailed(f"download of {meta.name} vetoed by pre_download {r.describe()}", 503)

    def _pull_all(self, d: Download, f, pieces: PieceList) -> None:
        meta = d.meta
        try:
            verifier = Verifier(meta, pieces)
        except PieceMismatch as exc:
            raise DownloadFailed(str(exc), 502) from None
        d.session = self.ctx.session()
        if self.cfg.pipelined and not self.cfg.fetch_only:
            d.relay = self.ctx.relay.announce(meta.name, meta.version, self.ctx.node, d.session)
        deadline = time.monotonic() + self.cfg.fetch_timeout
        bad: set[str] = set()       # sent bytes that failed verification: never again this fetch
        failures: dict[str, int] = {}
        attempt = 0
        progress = Progress(log, f"fetching {meta.name}", meta.size, self.cfg.progress_interval)
        while not verifier.complete:
            if time.monotonic() >= deadline:
                raise DownloadFailed(f"{meta.name}: no complete copy within fetch_timeout "
                                     f"({self.cfg.fetch_timeout:g}s); {verifier.verified} of {meta.size} bytes verified", 504)
            self._check_cancelled(d)
            complete, partial, relay_index = self._candidates(d, bad, failures)
            if not complete and not partial:
                if attempt == 0 and not bad:
                    raise DownloadFailed(f"{meta.name}: no node holds a verified copy (no passing holder in Consul)", 404)
                if bad and self.ctx.finder.holders(meta.id, self.ctx.node):
                    raise DownloadFailed(f"{meta.name}: every holder ({', '.join(sorted(bad))}) sent bytes that failed "
                                         "verification; they were asked to re-check their copies", 502)
                attempt += 1
                self._backoff(attempt, deadline, f"no usable holder of {meta.name}")
                continue
            claimed = self._claim(d, partial + complete)
            if claimed is None:
                attempt += 1
                self._wait_for_source(d, complete, deadline, relay_index)
                continue
            holder, sem = claimed
            try:
                d.source = holder.node
                kind = "complete" if holder in complete else "partial"
                self._pull(d, f, holder, verifier, progress, metrics.FETCHED_BYTES.labels(kind))
            except CorruptSource as exc:
                metrics.SOURCE_SWITCHES.labels("corrupt").inc()
                bad.add(holder.node)
                log.error("%s; discarding its bytes and using another holder", exc)
                verifier.rewind(f)
                self._report_corrupt(holder, meta.name)
            except SourceError as exc:
                metrics.SOURCE_SWITCHES.labels("broken").inc()
                failures[holder.node] = failures.get(holder.node, 0) + 1
                attempt += 1
                log.warning("%s; resuming from byte %d with another holder", exc, verifier.verified)
                verifier.rewind(f)
            finally:
                sem.release()
        log.info("fetched %s from %s: %s", meta.name, d.source, progress.summary())

    def _candidates(self, d: Download, bad: set[str],
                    failures: dict[str, int]) -> tuple[list[Holder], list[Holder], str | None]:
        """Complete holders (fewest failures, then random among the `nearest` nearest), then
        partial holders ranked before us (announced earlier), latest first."""
        meta = d.meta
        found = [h for h in self.ctx.finder.holders(meta.id, self.ctx.node) if h.node not in bad]
        complete: list[Holder] = []
        if found:
            fewest = min(failures.get(h.node, 0) for h in found)
            best = [h for h in found if failures.get(h.node, 0) == fewest][: self.cfg.nearest]
            random.shuffle(best)
            complete = best + [h for h in found if h not in best]
        partial: list[Holder] = []
        relay_index = None
        if self.cfg.pipelined:
            relay_index, upstream = self.ctx.relay.upstream(meta.name, meta.version, d.relay.rank if d.relay else 0)
            if any(n not in d.peers for n in upstream):  # addresses of new partial holders
                d.peers = self.ctx.finder.peers(self.ctx.node)
            peers = d.peers
            have = {h.node for h in complete}
            partial = [peers[n] for n in upstream if n in peers and n not in bad and n not in have]
            # Our immediate predecessor first: every fetcher taking the one announced just
            # before it builds the chain in one step, with no race for slots.
            partial.reverse()
            partial.sort(key=lambda h: failures.get(h.node, 0))
        return complete, partial, relay_index

    def _claim(self, d: Download, candidates: list[Holder]) -> tuple[Holder, Semaphore] | None:
        """The first candidate with a free fetch slot, its slot taken."""
        for holder in candidates:
            sem = self.ctx.semaphore(holder.node, d.session)
            if sem.has_free_slot() and sem.acquire(wait=0):
                return holder, sem
        return None

    def _wait_for_source(self, d: Download, complete: list[Holder], deadline: float,
                         relay_index: str | None) -> None:
        """Every source is busy: wait for news instead of polling."""
        left = max(0.0, deadline - time.monotonic())
        if self.cfg.pipelined:
            # A new or departed partial holder is the likeliest news.  Block from the index
            # our candidates came from, so a change made while we tried slots wakes us at once.
            rank = d.relay.rank if d.relay else 0
            self.ctx.relay.upstream(d.meta.name, d.meta.version, rank, index=relay_index, wait="1s")
        elif complete:
            # Block on the nearest holder's semaphore until a slot frees (Consul wakes us).
            sem = self.ctx.semaphore(complete[0].node, d.session)
            if sem.acquire(wait=min(2.0 + random.random(), left)):
                sem.release()
        else:
            time.sleep(min(0.5, left))
        log.debug("all fetch slots of the holders of %s were busy; looking again", d.meta.name)

    def _report_corrupt(self, holder: Holder, name: str) -> None:
        """Ask the holder to re-check its copy, so it stops serving bad bytes to everyone."""
        try:
            self._http.post(f"{holder.url}/_tuggle/verify/{name}", timeout=5)
        except requests.exceptions.RequestException as exc:
            log.warning("could not ask %s to re-verify %s: %s", holder.node, name, exc)

    def _check_cancelled(self, d: Download) -> None:
        if d.cancelled:
            raise DownloadFailed(f"{d.meta.name} was deleted during the fetch", 404)

    def _backoff(self, attempt: int, deadline: float, why: str) -> None:
        delay = min(5.0, 0.2 * 2 ** min(attempt, 5)) * (0.5 + random.random())
        delay = max(0.0, min(delay, deadline - time.monotonic()))
        log.info("%s; retrying in %.1fs", why, delay)
        time.sleep(delay)

    def _pull(self, d: Download, f, holder: Holder, verifier: Verifier, progress: Progress, counter) -> None:
        """Stream from one holder from the first unverified byte; raises SourceError to move on."""
        meta = d.meta
        offset = verifier.received
        headers = {INTERNAL_HEADER: self.ctx.node}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            with self._http.get(f"{holder.url}/{meta.name}", headers=headers, stream=True,
                                timeout=(5.0, self.cfg.stall_timeout)) as r:
                if r.status_code == 206 and r.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
                    skip = 0
                elif r.status_code == 200:
                    skip = offset  # the holder ignored Range: drop what we already have
                else:
                    raise SourceError(f"{holder.node} answered {r.status_code} for {meta.name}")
                if r.headers.get("ETag", "").strip('"') not in ("", meta.etag):
                    raise CorruptSource(f"{holder.node} holds another version of {meta.name}")
                for chunk in r.raw.stream(CHUNK, decode_content=False):
                    if skip:
                        cut = min(skip, len(chunk))
                        chunk, skip = chunk[cut:], skip - cut
                    if not chunk:
                        continue
                    self._check_cancelled(d)
                    self.bucket.take(len(chunk))
                    f.write(chunk)
                    before = verifier.verified
                    try:
                        verifier.feed(chunk)
                    except PieceMismatch as exc:
                        raise CorruptSource(f"{exc} (sent by {holder.node})") from None
                    if verifier.verified != before:
                        counter.inc(verifier.verified - before)
                    if verifier.verified != before and verifier.verified < meta.size:
                        # Readers pread the file, so flush first.  The final bytes are
                        # released by finish(), after the commit: once a client has the
                        # whole object, so does this node's data dir.
                        f.flush()
                        d.advance(verifier.verified)
                    progress.update(verifier.received)
                verifier.finish_empty()
                if not verifier.complete:
                    raise SourceError(f"{holder.node} closed the stream at byte {verifier.received} of {meta.size}")
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError) as exc:
            raise SourceError(f"transfer of {meta.name} from {holder.node} broke ({exc.__class__.__name__})") from exc
