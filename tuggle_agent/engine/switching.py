"""When a fetch leaves its source, and where a slow node stands in the relay chain: pure
policies with their own unit tests (README "Distribution speed", heterogeneous nodes).

A pipelined chain runs at the speed of its slowest link, so a node at B/4 early in the
chain makes every node behind it take 4 × S/B.  Two rules keep a slow node from slowing
anyone but itself:

1. Rank by speed.  Every fetcher states its speed in the Flags of its relay entry
   (`Speed`: what it can take, `fetch_rate`, and what it can pass on, the least of its
   `fetch_rate` and `serve_rate`; 0 = unlimited).  A fetcher skips a partial holder ranked
   before it that could not feed it well (`skips`), and a partial holder that a node
   ranked after it would skip re-announces itself, which ranks it after everyone there
   (`relay_verdict` says "sink"): it sinks to the tail instead of heading the chain.  The
   skipping node nudges it (`choose_upstream(...).sinking`) and meanwhile waits for its
   nearest predecessor's slot rather than take an earlier holder's.  The rank rule stays
   whole (a node only takes from nodes ranked before it, or complete holders), so the
   relay graph stays acyclic.  A fetch whose source sank behind it leaves that source
   ("reranked").
2. Measure the source.  `SourceMonitor` watches the rate the current source delivers;
   when it stays well below what this node can take (its own `fetch_rate`, or the best
   rate a source gave this fetch) for `patience` windows, it asks to move to a better
   holder -- which the fetcher does only if one has a free slot (never to something no
   better), resuming with Range from the verified offset as after a stall.
"""

from __future__ import annotations

import math
import time
from collections.abc import Collection
from dataclasses import dataclass

from ..consul.relay import RelayPeer

# A source that delivers below SLOW × what we can take is "well below": a B/4 or B/2
# node is slow; noise of a few percent between nodes at B is not (no flapping).  At 0.75,
# nodes behind a relay it accepts run at ≥ 0.75 × B, i.e. ≤ 1.33 × S/B at worst.
SLOW = 0.75
KIB = 1024
_HALF = 2**32 - 1  # each half of the uint64 Flags: a rate in KiB/s


@dataclass(frozen=True)
class Speed:
    """Bytes/s a node can take (fetch) and pass on (relay); math.inf = unlimited."""

    take: float
    relay: float

    @classmethod
    def from_config(cls, fetch_rate: int | None, serve_rate: int | None) -> Speed:
        take = float(fetch_rate) if fetch_rate else math.inf
        relay = min(take, float(serve_rate) if serve_rate else math.inf)
        return cls(take, relay)

    def to_flags(self) -> int:
        """High 32 bits: take, low 32 bits: relay, each in KiB/s (0 = unlimited)."""
        return (_kib(self.take) << 32) | _kib(self.relay)

    @classmethod
    def from_flags(cls, flags: int) -> Speed:
        return cls(_rate((flags >> 32) & _HALF), _rate(flags & _HALF))


def _kib(rate: float) -> int:
    return 0 if math.isinf(rate) else max(1, min(_HALF, math.ceil(rate / KIB)))


def _rate(kib: int) -> float:
    return math.inf if kib == 0 else float(kib * KIB)


def too_slow(rate: float, want: float) -> bool:
    """Is `rate` well below `want`?"""
    return rate < SLOW * want


def skips(source: Speed, me: Speed) -> bool:
    """Does a fetcher at `me` pass over a partial holder at `source` ranked before it?
    Only if that holder could not feed it well while it could feed that holder well:
    the rule is antisymmetric, so two nodes never both sink behind each other."""
    return too_slow(source.relay, me.take) and not too_slow(me.relay, source.take)


@dataclass(frozen=True)
class Upstream:
    nodes: list[str]  # partial holders we would take from, earliest first
    nearest_only: bool  # wait for the nearest one's slot; no fallback to earlier holders
    sinking: list[str]  # the nodes we skip that rank after it: they should sink (nudge them)


def choose_upstream(
    live: list[RelayPeer], rank: int, me: Speed, excluded: Collection[str] = (), sunk: bool = False
) -> Upstream:
    """The partial holders ranked before `rank` (0: all) that we would take from, earliest
    first, and whether to wait for the nearest one alone rather than fall back to earlier
    holders, partial or complete.

    Falling back takes the slot an earlier holder's own successor needs: in a chain (one
    slot per source) that strands the successor.  It is right when the predecessor's slot
    went to a node that stays, wrong when it went to a slow node about to sink -- which is
    the case when a node we skip ranks between our predecessor and us, or when we sank
    ourselves (we then belong at the tail, behind the nearest node only)."""
    before = [p for p in live if not rank or p.rank < rank]
    usable = [p for p in before if p.node not in excluded and not skips(Speed.from_flags(p.flags), me)]
    after = usable[-1].rank if usable else 0
    sinking = [p.node for p in before if p.rank > after and skips(Speed.from_flags(p.flags), me)]
    if not usable:  # complete holders only: whoever holds their slots, we may take any
        return Upstream([], False, sinking)
    nearest = usable[-1]
    if sunk or sinking:
        return Upstream([nearest.node], True, sinking)
    return Upstream([p.node for p in usable], False, [])


def relay_verdict(me: Speed, rank: int, live: list[RelayPeer], source: str | None) -> str | None:
    """What the relay entries say about this fetcher (ranked `rank`, pulling from `source`):
    "sink" when a node ranked after us skips us (we would hold it back), "reranked" when
    our source is a partial holder now ranked after us (it sank), else None."""
    for p in live:
        if p.rank > rank and skips(me, Speed.from_flags(p.flags)):
            return "sink"
    if source is not None and any(p.node == source and p.rank > rank for p in live):
        return "reranked"
    return None


class SourceMonitor:
    """The rate one source delivers, over windows of at least `window` seconds.

    `observe(n)` after every chunk; True means "this source stays well below what we can
    take: look for a better one".  `take` is our own fetch_rate (inf when unlimited: then
    the reference is the best window rate any source gave this fetch, which survives
    `restart`).  It asks only after `patience` slow windows in a row, and after a refusal
    (`declined`: nothing better was free) waits as long again before asking again.
    """

    def __init__(self, take: float, window: float = 1.0, patience: int = 2, clock=time.monotonic):
        self.take = take
        self.window = window
        self.patience = patience
        self.clock = clock
        self.best = 0.0  # best window rate of this fetch, any source
        self.last_rate = 0.0
        self.restart()

    def restart(self) -> None:
        """A new source: its windows start now."""
        self._start = self.clock()
        self._bytes = 0
        self._slow = 0

    @property
    def reference(self) -> float:
        return self.take if not math.isinf(self.take) else self.best

    def observe(self, n: int) -> bool:
        self._bytes += n
        now = self.clock()
        elapsed = now - self._start
        if elapsed < self.window:
            return False
        rate = self._bytes / elapsed
        self._start, self._bytes = now, 0
        self.last_rate = rate
        slow = self.reference > 0 and too_slow(rate, self.reference)
        self.best = max(self.best, rate)
        self._slow = self._slow + 1 if slow else 0
        return self._slow >= self.patience

    def declined(self) -> None:
        """Nothing better was free: keep this source, and wait `patience` windows again."""
        self._slow = 0
