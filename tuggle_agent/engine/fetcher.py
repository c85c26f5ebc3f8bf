"""Fetching an object from the cluster: one FetchJob owns one fetch from its pre-download
hook to its holder key.

One fetch per object per node (single flight): concurrent GETs and prefetches of the
same object share one Download.  Different objects fetch in parallel.  A job walks the
holders in the order of the source policy (sources.py), takes a slot of the source's
Consul semaphore so no source feeds more than `max_fetch_per_source` fetchers
cluster-wide, and pulls with HTTP Range from the first byte not yet verified (peer.py),
so a source that dies, stalls, drips or lies costs only the piece in flight, and is not
asked again during this fetch.  A source that stays slow is left for a free faster
holder, and a node too slow to head the relay chain sinks to its tail (switching.py).
With no usable holder the job waits for one (a blocking query) for at most
`holder_wait`, then fails with NoHolder or BadSources, so a client is never kept for
`fetch_timeout` by a cluster that cannot deliver.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .. import metrics
from ..config import Config
from ..consul.client import ConsulUnavailable
from ..consul.holders import HolderIndex
from ..consul.kv import ObjectsKV
from ..consul.relay import RelayEntry, RelayPeer, RelayRegistry
from ..consul.semaphore import Semaphore
from ..consul.session import RenewedSession
from ..errors import BadSources, Deleted, Internal, NoHolder, NoSpace, TimedOut, TuggleError, Vetoed
from ..objects.edges import Edge
from ..objects.metadata import ObjectMeta, PieceList
from ..objects.verify import PieceMismatch, Verifier
from .copies import Copies
from .download import Download
from .hooks import hook_env, run_hooks
from .peer import CorruptSource, PeerClient, SourceError
from .progress import Progress
from .ratelimit import TokenBucket
from .sources import Candidate, SourcePolicy
from .store import LocalStore
from .switching import SourceMonitor, Speed, choose_upstream, relay_verdict, skips

log = logging.getLogger(__name__)


class Switch(Exception):
    """Leave the current source for a better place (switching.py): "slow" (the source stays
    well below what we can take and a better holder is free), "sink" (a faster node ranked
    after us waits for what we hold: rank again, after it) or "reranked" (our source sank
    behind us)."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class Segment:
    """One source used by a fetch: who, from when to when, and why we left it (None for the last)."""

    source: str
    start: float
    end: float
    left_because: str | None


@dataclass(frozen=True)
class FetchDeps:
    """What every fetch on this node uses (built once by the Node)."""

    cfg: Config
    node: str
    store: LocalStore
    copies: Copies
    kv: ObjectsKV
    finder: HolderIndex  # holder keys (and tags, with holder_tags)
    relay: RelayRegistry
    peer: PeerClient
    policy: SourcePolicy
    bucket: TokenBucket
    new_session: Callable[[], RenewedSession]  # one per fetch: semaphore slots, relay entry
    semaphore: Callable[[str, RenewedSession], Semaphore]
    # Disk lifecycle (disk.py): make room for a fetch or raise NoSpace before its temp
    # file exists; told when a fetch ended (its reserved space is released).
    admit: Callable[[ObjectMeta], None] | None = None
    ended: Callable[[ObjectMeta], None] | None = None


class Fetcher:
    """The node's fetches, one per object name at a time."""

    def __init__(self, deps: FetchDeps, on_failed: Callable[[ObjectMeta, TuggleError], None]):
        self.deps = deps
        self.on_failed = on_failed  # the node retries failed sync prefetches
        self._active: dict[str, Download] = {}
        self._lock = threading.Lock()

    def active(self, name: str) -> Download | None:
        with self._lock:
            return self._active.get(name)

    def snapshot(self) -> list[Download]:
        with self._lock:
            return list(self._active.values())

    def ensure(self, meta: ObjectMeta) -> Download:
        """The running fetch of this exact object version, or a new one (NoSpace when the
        object cannot fit, before anything is written)."""
        with self._lock:
            d = self._active.get(meta.name)
            if d is not None and d.meta.version == meta.version and not d.done:
                return d
        if self.deps.admit is not None:
            self.deps.admit(meta)
        with self._lock:
            d = self._active.get(meta.name)
            if d is not None and d.meta.version == meta.version and not d.done:
                return d
            try:
                temp, f = self.deps.store.temp_file(meta.name, "fetch")
            except BaseException:
                if self.deps.ended is not None:
                    self.deps.ended(meta)  # give back the space admitted for it
                raise
            d = Download(meta, temp)
            self._active[meta.name] = d
        job = FetchJob(self.deps, d, f)
        threading.Thread(target=self._run, args=(job,), name=f"fetch-{meta.name}", daemon=True).start()
        return d

    def prefetch(self, meta: ObjectMeta) -> bool:
        """ensure() for a sync or an event: a refusal for lack of space is logged and retried
        later like any transient failure, never raised into the caller."""
        try:
            self.ensure(meta)
        except NoSpace as exc:
            self.on_failed(meta, exc)
            return False
        return True

    def cancel(self, name: str, version: str | None = None) -> bool:
        """A DELETE arrived: the running fetch (of `version`, if given) must not land."""
        d = self.active(name)
        if d is None or (version is not None and d.meta.version != version):
            return False
        d.cancelled = True
        return True

    def cancel_all(self) -> None:
        for d in self.snapshot():
            d.cancelled = True

    def _run(self, job: FetchJob) -> None:
        try:
            error = job.run()
            if error is not None:
                self.on_failed(job.meta, error)
        finally:
            with self._lock:
                if self._active.get(job.meta.name) is job.d:
                    del self._active[job.meta.name]
            if self.deps.ended is not None:
                self.deps.ended(job.meta)


class FetchJob:
    """One fetch of one object version: pre-hook, pull, commit, post-hook, holder key, edge."""

    def __init__(self, deps: FetchDeps, d: Download, f):
        self.deps = deps
        self.cfg = deps.cfg
        self.d = d
        self.meta = d.meta
        self.f = f
        self.session: RenewedSession | None = None
        self.relay: RelayEntry | None = None
        self.speed = Speed.from_config(self.cfg.fetch_rate, self.cfg.serve_rate)
        self.monitor = SourceMonitor(self.speed.take)
        self.segments: list[Segment] = []  # sources left before the last one, for ?graph
        self._verdict: tuple[int, str | None] = (0, None)  # (our rank then, verdict): from the relay watch thread
        self._source: str | None = None  # the holder being pulled from
        self._excluded: dict[str, str] = {}
        self._slow: set[str] = set()  # left for being slow: used again only if nothing else is left
        self._live: list[RelayPeer] = []  # the relay entries _candidates saw last
        self._sunk = False  # we re-ranked behind faster nodes: we belong at the tail
        self._verifier: Verifier | None = None

    def run(self) -> TuggleError | None:
        """The whole life of the fetch; returns the failure (already given to readers)."""
        meta, d = self.meta, self.d
        metrics.ACTIVE_FETCHES.inc()
        try:
            with self.f:
                self._pre_hooks()
                pieces = self.deps.kv.pieces(meta)
                if pieces is None:
                    raise Deleted(f"{meta.name}: piece digests missing in Consul KV; it was deleted or replaced")
                self._pull_all(pieces)
                self.f.flush()
                os.fsync(self.f.fileno())
            self._commit()
            # The edge before the last bytes: a client that has the whole object sees its
            # fetch in ?graph (one KV write; hooks may take minutes, so they come after).
            self._record_edge()
            d.finish()
            metrics.FETCHES.labels("ok").inc()
            metrics.FETCH_SECONDS.observe(time.time() - d.started_at)
            log.info(
                "fetched %s (%d bytes) from %s: verified sha256 %s", meta.name, meta.size, d.source, meta.sha256[:16]
            )
            self._post_hooks_and_advertise()
            return None
        except Exception as exc:  # never leave readers waiting on a dead thread
            failure = self._as_error(exc)
            log.error("fetch of %s failed: %s", meta.name, failure)
            metrics.FETCHES.labels(type(failure).__name__).inc()
            d.finish(failure)
            return failure
        finally:
            if self.relay is not None:
                self.relay.withdraw()  # after the holder key: peers always find us one way or the other
            if self.session is not None:
                self.session.close()
            d.temp_path.unlink(missing_ok=True)
            metrics.ACTIVE_FETCHES.dec()

    def _as_error(self, exc: Exception) -> TuggleError:
        """The domain error for a failed fetch, with what the operator can do about it."""
        if isinstance(exc, TuggleError):
            return exc
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return NoSpace(
                f"no space left in {self.cfg.data_dir} for {self.meta.name}: free space there; "
                "the next GET or sync retries"
            )
        log.exception("fetch of %s failed unexpectedly", self.meta.name)
        return Internal(f"internal error: {exc}")

    # -- the steps --------------------------------------------------------
    def _pre_hooks(self) -> None:
        hooks = self.cfg.hooks["pre_download"]
        if not hooks:
            return
        env = hook_env(self.meta, self.deps.store.path(self.meta.name), self.deps.node)
        for r in run_hooks("pre_download", hooks, self.meta, env):
            if not r.ok:
                raise Vetoed(f"download of {self.meta.name} vetoed by pre_download {r.describe()}")

    def _commit(self) -> None:
        meta = self.meta
        with self.deps.store.lock:
            self._check_cancelled()
            current = self.deps.kv.get(meta.name)
            if current is None or current.version != meta.version:
                raise Deleted(f"{meta.name} was deleted or replaced during the fetch")
            self.deps.store.commit(self.d.temp_path, meta, self.d.source)

    def _post_hooks_and_advertise(self) -> None:
        meta, store = self.meta, self.deps.store
        hooks = self.cfg.hooks["post_download"]
        if hooks:
            results = run_hooks(
                "post_download", hooks, meta, hook_env(meta, store.path(meta.name), self.deps.node, self.d.source)
            )
            failed = [r for r in results if not r.ok]
            store.set_status(
                meta.name,
                post_download="failed" if failed else "ok",
                post_download_error=failed[0].describe() if failed else "",
            )
            self._record_hook_result(failed[0].describe() if failed else None)
            if failed and self.cfg.post_download_failure == "discard":
                with store.lock:
                    local = store.get(meta.name)
                    if local is not None and local.meta.version == meta.version:
                        self.deps.copies.drop(
                            meta.name, meta, "its post_download hook failed (post_download_failure: discard)"
                        )
                return
        # A DELETE may have come while the hooks ran: advertise only a copy that is still here.
        with store.lock:
            local = store.get(meta.name)
            if self.d.cancelled or local is None or local.meta.version != meta.version:
                log.info("not advertising %s: it was deleted while its hooks ran", meta.name)
                return
            self.deps.copies.advertise(meta)

    def _record_hook_result(self, error: str | None) -> None:
        """In KV for ?status on any node: <ns>.status/<name>/<version>/<node>."""
        try:
            self.deps.kv.record_post_download(self.meta, self.deps.node, error)
        except ConsulUnavailable as exc:
            log.warning("post_download result of %s not recorded in Consul: %s", self.meta.name, exc)

    def _record_edge(self) -> None:
        """The final source's edge, and one per source this fetch switched away from."""
        now = time.time()
        edges = [
            Edge(g.source, self.deps.node, g.start, g.end, g.end - g.start, g.left_because)
            for g in self.segments
            if g.source != self.d.source  # the final source's edge spans the whole fetch
        ]
        edges.append(Edge(self.d.source, self.deps.node, self.d.started_at, now, now - self.d.started_at))
        try:
            for edge in edges:
                self.deps.kv.add_edge(self.meta.name, edge)
        except ConsulUnavailable as exc:
            log.warning("fetch graph edge of %s not recorded: %s", self.meta.name, exc)

    # -- pulling ----------------------------------------------------------
    def _pull_all(self, pieces: PieceList) -> None:
        meta, d = self.meta, self.d
        try:
            verifier = Verifier(meta, pieces)
        except PieceMismatch as exc:
            raise BadSources(str(exc)) from None
        self._verifier = verifier
        self.session = self.deps.new_session()
        if self.cfg.pipelined and not self.cfg.fetch_only:
            watch = self.speed.relay != math.inf  # an unlimited relay is never skipped: nothing to watch
            self.relay = self.deps.relay.announce(
                meta.name, meta.version, self.deps.node, self.session, self.speed.to_flags()
            )
            if watch:
                threading.Thread(target=self._watch_relay, name=f"relay-watch-{meta.name}", daemon=True).start()
        deadline = time.monotonic() + self.cfg.fetch_timeout
        excluded = self._excluded  # holder -> why it failed this fetch
        corrupt: set[str] = set()
        stuck_since: float | None = None  # since when no holder was usable
        progress = Progress(log, f"fetching {meta.name}", meta.size, self.cfg.progress_interval)
        while not verifier.complete:
            now = time.monotonic()
            if now >= deadline:
                raise TimedOut(
                    f"{meta.name}: no complete copy within fetch_timeout ({self.cfg.fetch_timeout:g}s); "
                    f"{verifier.verified} of {meta.size} bytes verified"
                )
            self._check_cancelled()
            candidates, index, relay_index = self._candidates(set(excluded) | self._slow)
            if not candidates and self._slow:  # sources left for being slow beat no source
                self._slow.clear()
                continue
            if not candidates:
                stuck_since = stuck_since if stuck_since is not None else now
                if now - stuck_since >= self.cfg.holder_wait:
                    raise self._no_source_error(excluded, corrupt)
                self._wait_for_holders(index, min(deadline, stuck_since + self.cfg.holder_wait))
                continue
            stuck_since = None
            claimed = self._claim(candidates)
            if claimed is None:
                if not self._sank_while_waiting():
                    self._wait_for_slot(candidates, deadline, relay_index)
                continue
            cand, sem = claimed
            holder = cand.holder
            started = time.time()
            try:
                d.source = self._source = holder.node
                self.monitor.restart()
                self._pull(holder, verifier, progress, metrics.FETCHED_BYTES.labels(cand.kind))
            except Switch as exc:
                sem.release()  # before a rejoin: the node we make way for may claim this slot at once
                self._switched(holder.node, exc, started, verifier)
            except CorruptSource as exc:
                metrics.SOURCE_SWITCHES.labels("corrupt").inc()
                self.segments.append(Segment(holder.node, started, time.time(), "corrupt"))
                excluded[holder.node] = str(exc)
                corrupt.add(holder.node)
                log.error("%s; discarding its bytes and using another holder", exc)
                verifier.rewind(self.f)
                self.deps.peer.report_corrupt(holder, meta.name)
            except SourceError as exc:
                metrics.SOURCE_SWITCHES.labels("broken").inc()
                self.segments.append(Segment(holder.node, started, time.time(), "broken"))
                excluded[holder.node] = str(exc)
                log.warning("%s; resuming from byte %d with another holder", exc, verifier.verified)
                verifier.rewind(self.f)
            finally:
                sem.release()
                self._source = None
        log.info("fetched %s from %s: %s", meta.name, d.source, progress.summary())

    # -- switching (switching.py) -------------------------------------------
    def _switch_check(self, n: int) -> None:
        """Called by _pull after each chunk of `n` bytes: raises Switch to leave the source."""
        if self._verifier is not None and self._verifier.received >= self.meta.size:
            return  # the last bytes are in: nothing left to fetch elsewhere
        (rank, verdict), self._verdict = self._verdict, (0, None)
        if self.relay is None or rank != self.relay.rank:
            verdict = None  # computed before we last re-ranked
        if verdict == "sink":
            raise Switch("sink", "a faster node ranked after us is waiting for our source: ranking again after it")
        if verdict == "reranked":
            raise Switch("reranked", f"{self._source} sank behind us in the relay chain")
        if self.monitor.observe(n):
            rate, ref = self.monitor.last_rate, self.monitor.reference
            if self._better_source_free():
                raise Switch("slow", f"{self._source} sent {rate / 2**20:.2f} MiB/s, we can take {ref / 2**20:.2f}")
            self.monitor.declined()
            log.debug("%s is slow (%.0f B/s) but no better holder is free; staying", self._source, rate)

    def _sank_while_waiting(self) -> bool:
        """Every slot before us is busy.  If a node ranked after us skips us, the free slot
        is behind us (the tail's): rank again after it rather than wait for the chain."""
        if self.relay is None or relay_verdict(self.speed, self.relay.rank, self._live, None) != "sink":
            return False
        metrics.SOURCE_SWITCHES.labels("sink").inc()
        self._rejoin()
        return True

    def _rejoin(self) -> None:
        """Rank again after everyone there, and tell the nodes ranked after our old place
        that may pull from us (those that do not skip us) that their source moved."""
        assert self.relay is not None
        old, meta = self.relay.rank, self.meta
        _, live = self.deps.relay.live(meta.name, meta.version)
        self.relay.rejoin()
        self._sunk = True
        log.info("%s: %s ranks %d in the relay chain now (was %d)", meta.name, self.deps.node, self.relay.rank, old)
        for p in live:
            if old < p.rank < self.relay.rank and not skips(self.speed, Speed.from_flags(p.flags)):
                self.deps.relay.nudge(meta.name, meta.version, p.node, self.deps.node)

    def _better_source_free(self) -> bool:
        """Is another holder (not the current one, not failed) free to take us now?"""
        assert self.session is not None
        current = {self._source} if self._source else set()
        try:
            candidates, _, _ = self._candidates(set(self._excluded) | self._slow | current)
            return any(self.deps.semaphore(c.holder.node, self.session).has_free_slot() for c in candidates[:3])
        except ConsulUnavailable:
            return False

    def _switched(self, source: str, exc: Switch, started: float, verifier: Verifier) -> None:
        metrics.SOURCE_SWITCHES.labels(exc.reason).inc()
        self.segments.append(Segment(source, started, time.time(), exc.reason))
        log.info("%s: leaving %s at byte %d: %s", self.meta.name, source, verifier.verified, exc)
        if exc.reason == "slow":
            self._slow.add(source)
        if exc.reason == "sink" and self.relay is not None:
            self._rejoin()
        verifier.rewind(self.f)

    def _watch_relay(self) -> None:
        """While the fetch runs: wait on our nudge key (a blocking query that wakes only when
        someone has news for us: a faster node skips us, or our source sank), then read the
        relay entries and tell _switch_check whether to sink or leave our source."""
        meta, node, index, seen = self.meta, self.deps.node, None, False
        try:
            while not self.d.done and self.relay is not None:
                try:
                    new_index, nudged = self.deps.relay.wait_nudge(meta.name, meta.version, node, index, "10s")
                    seen = seen or nudged
                    if nudged and new_index != index and not self.d.done:
                        _, live = self.deps.relay.live(meta.name, meta.version)
                        rank = self.relay.rank
                        self._verdict = (rank, relay_verdict(self.speed, rank, live, self._source))
                    index = new_index
                except Exception as exc:  # a hint thread: Consul trouble must not end the fetch
                    log.debug("waiting for relay news about %s: %s", meta.name, exc)
                    index = None
                    time.sleep(1)
        finally:
            if seen:
                self.deps.relay.clear_nudge(meta.name, meta.version, node)

    def _no_source_error(self, excluded: dict[str, str], corrupt: set[str]) -> TuggleError:
        name, wait = self.meta.name, self.cfg.holder_wait
        if corrupt and set(excluded) == corrupt:
            return BadSources(
                f"{name}: every holder ({', '.join(sorted(corrupt))}) sent bytes that failed "
                "verification; they were asked to re-check their copies"
            )
        if excluded:
            reasons = "; ".join(f"{n}: {why}" for n, why in sorted(excluded.items()))
            return BadSources(
                f"{name}: no holder could deliver it ({reasons}); no other holder appeared "
                f"within holder_wait ({wait:g}s)"
            )
        return NoHolder(
            f"{name}: no node holds a verified copy (no passing holder in Consul) after waiting "
            f"holder_wait ({wait:g}s); try again later, or check the holders' health in Consul"
        )

    def _candidates(self, excluded: set[str]) -> tuple[list[Candidate], str | None, str | None]:
        """Complete holders (nearest first) and partial holders ranked before us, both
        with their addresses, read from this version's keys only (consul/holders.py)."""
        meta = self.meta
        index, complete = self.deps.finder.holders_index(meta.name, meta.version)
        if self.cfg.pipelined:
            relay_index, live = self.deps.relay.live(meta.name, meta.version)
            up = choose_upstream(live, self.relay.rank if self.relay else 0, self.speed, excluded, self._sunk)
            if up.nearest_only:
                complete = []
            for node in up.sinking:  # it holds the slot we wait for: tell it to look
                self.deps.relay.nudge(meta.name, meta.version, node, self.deps.node)
            self._live = live
            peers = {p.node: p.holder for p in live if p.holder is not None}
            return self.deps.policy.order(complete, up.nodes, peers, excluded), index, relay_index
        return self.deps.policy.order(complete, [], {}, excluded), index, None

    def _claim(self, candidates: list[Candidate]) -> tuple[Candidate, Semaphore] | None:
        """The first candidate with a free fetch slot, its slot taken."""
        assert self.session is not None
        for cand in candidates:
            sem = self.deps.semaphore(cand.holder.node, self.session)
            if sem.has_free_slot() and sem.acquire(wait=0):
                return cand, sem
        return None

    def _wait_for_holders(self, index: str | None, until: float) -> None:
        """No usable holder: block until Consul's holder list changes (or a short while)."""
        left = max(0.0, until - time.monotonic())
        if left > 0:
            self.deps.finder.holders_index(
                self.meta.name, self.meta.version, index=index, wait=f"{min(2.0, left):.3f}s"
            )
            log.debug("waiting for a usable holder of %s", self.meta.name)

    def _wait_for_slot(self, candidates: list[Candidate], deadline: float, relay_index: str | None) -> None:
        """Every source is busy: wait for news instead of polling."""
        assert self.session is not None
        left = max(0.0, deadline - time.monotonic())
        if self.cfg.pipelined:
            # A new or departed partial holder is the likeliest news.  Block from the index
            # our candidates came from, so a change made while we tried slots wakes us at once.
            self.deps.relay.upstream(
                self.meta.name, self.meta.version, self.relay.rank if self.relay else 0, index=relay_index, wait="1s"
            )
        else:
            # Block on the nearest holder's semaphore until a slot frees (Consul wakes us).
            sem = self.deps.semaphore(candidates[0].holder.node, self.session)
            if sem.acquire(wait=min(2.5, left)):
                sem.release()
        log.debug("all fetch slots of the holders of %s were busy; looking again", self.meta.name)

    def _check_cancelled(self) -> None:
        if self.d.cancelled:
            raise Deleted(f"{self.meta.name} was deleted during the fetch")

    def _pull(self, holder, verifier: Verifier, progress: Progress, counter) -> None:
        """Stream from one holder from the first unverified byte; raises SourceError to move on."""
        meta, d, f = self.meta, self.d, self.f
        with self.deps.peer.open(holder, meta, verifier.received) as chunks:
            for chunk in chunks:
                self._check_cancelled()
                self.deps.bucket.take(len(chunk))
                f.write(chunk)
                before = verifier.verified
                try:
                    verifier.feed(chunk)
                except PieceMismatch as exc:
                    raise CorruptSource(f"{exc} (sent by {holder.node})") from None
                if verifier.verified != before:
                    counter.inc(verifier.verified - before)
                    if verifier.verified < meta.size:
                        # Readers pread the file, so flush first.  The final bytes are
                        # released by finish(), after the commit: once a client has the
                        # whole object, so does this node's data dir.
                        f.flush()
                        d.advance(verifier.verified)
                progress.update(verifier.received)
                self._switch_check(len(chunk))
        verifier.finish_empty()
        if not verifier.complete:
            raise SourceError(f"{holder.node} closed the stream at byte {verifier.received} of {meta.size}")
