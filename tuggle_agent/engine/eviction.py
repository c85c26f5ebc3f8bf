"""Which local copies to evict, and whether a download fits: a pure policy, no I/O.

A copy may be evicted only when nothing needs it here: not pinned by a `?sync` whose
filters match this node, not being read, relayed or fetched, known to Consul KV (an
orphan may be the last copy after a KV loss, so it is never evicted), and held by at
least `min_copies` other passing nodes (asked through `holders`, lazily, only for the
copies the policy is about to choose, so Consul is asked at that moment).

Two reasons to evict: `max_age` (not read for longer; whatever the usage) and
`watermark` (usage, counting the download about to start, above the high watermark:
least recently read first until it is at or below the low watermark).  A download that
cannot fit within `max_disk` and the free space even after evicting everything that
may be evicted is refused, and nothing is evicted for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

MAX_AGE, WATERMARK = "max_age", "watermark"


@dataclass(frozen=True)
class Copy:
    """A complete local copy as the policy sees it."""

    name: str
    size: int
    last_read: float  # unix time of the last client GET or peer read (or the file's atime/mtime)
    pinned: bool = False  # a ?sync whose filters match this node
    in_use: bool = False  # being read, relayed or fetched right now
    orphan: bool = False  # Consul KV does not know this copy (or this version)

    @property
    def protected(self) -> str | None:
        """Why this copy may not be evicted whatever the holders, or None."""
        if self.orphan:
            return "orphan (unknown to Consul KV)"
        if self.pinned:
            return "pinned by ?sync"
        if self.in_use:
            return "in use"
        return None


@dataclass(frozen=True)
class Limits:
    max_bytes: int  # cache.max_disk, resolved
    high: float = 0.9  # shares of max_bytes
    low: float = 0.8
    max_age: float = 0.0  # seconds; 0 = never
    min_copies: int = 2
    headroom: int = 0  # bytes kept free on the filesystem beyond a download

    @property
    def high_bytes(self) -> int:
        return int(self.max_bytes * self.high)

    @property
    def low_bytes(self) -> int:
        return int(self.max_bytes * self.low)


@dataclass(frozen=True)
class Usage:
    used: int  # bytes the agent's copies, temp files and running fetches take (or will)
    free: int  # bytes still free on the filesystem for us, after running fetches complete


@dataclass
class Plan:
    evict: list[tuple[Copy, str]] = field(default_factory=list)  # (copy, reason), in order
    refused: str | None = None  # why the download does not fit, or None
    used_after: int = 0

    @property
    def freed(self) -> int:
        return sum(c.size for c, _ in self.evict)


def quiet(usage: Usage, limits: Limits, need: int = 0) -> bool:
    """Nothing to evict and a download of `need` bytes fits as is: no need to look at
    the copies (nor to ask Consul about them)."""
    return limits.max_age <= 0 and usage.used + need <= limits.high_bytes and need + limits.headroom <= usage.free


def _evictable(copies: list[Copy]) -> list[Copy]:
    """Unprotected copies, least recently read first (ties: larger first, then by name)."""
    return sorted((c for c in copies if c.protected is None), key=lambda c: (c.last_read, -c.size, c.name))


def plan(
    copies: list[Copy],
    usage: Usage,
    limits: Limits,
    now: float,
    holders: Callable[[str], int],
    need: int = 0,
) -> Plan:
    """The copies to evict, in order, and whether a download of `need` bytes fits.

    `holders(name)` is the number of other passing nodes holding the copy; it is only
    called for copies otherwise chosen, at most once each."""
    counts: dict[str, int] = {}

    def enough_holders(c: Copy) -> bool:
        if c.name not in counts:
            counts[c.name] = holders(c.name)
        return counts[c.name] >= limits.min_copies

    candidates = _evictable(copies)
    out = Plan()
    refused = None
    if need:
        over_max = usage.used + need - limits.max_bytes
        over_free = need + limits.headroom - usage.free
        short = max(over_max, over_free)
        if short > 0 and _freeable(candidates, short, enough_holders) < short:
            refused = _refusal(copies, usage, limits, need, over_max, over_free)
            need = 0  # nothing is evicted for a download that is refused
    used, free = usage.used, usage.free
    chosen: set[str] = set()
    if limits.max_age > 0:
        for c in candidates:
            if now - c.last_read > limits.max_age and enough_holders(c):
                out.evict.append((c, MAX_AGE))
                chosen.add(c.name)
                used, free = used - c.size, free + c.size
    # Bytes to free for the download (hard), and for the watermarks (soft: as far as possible).
    must = max(used + need - limits.max_bytes, need + limits.headroom - free, 0)
    target = max(must, used + need - limits.low_bytes if used + need > limits.high_bytes else 0)
    freed = 0
    for c in candidates:
        if freed >= target:
            break
        if c.name in chosen or not enough_holders(c):
            continue
        out.evict.append((c, WATERMARK))
        freed += c.size
    out.used_after = used - freed
    out.refused = refused
    return out


def _freeable(candidates: list[Copy], short: int, enough_holders: Callable[[Copy], bool]) -> int:
    """Bytes evictable, counted until `short` is reached (holders are asked only that far)."""
    if sum(c.size for c in candidates) < short:
        return 0
    total = 0
    for c in candidates:
        if total >= short:
            break
        if enough_holders(c):
            total += c.size
    return total


def _refusal(copies: list[Copy], usage: Usage, limits: Limits, need: int, over_max: int, over_free: int) -> str:
    pinned = [c for c in copies if c.pinned]
    kept = [c for c in copies if c.protected is None]
    parts = [
        f"needs {need} bytes",
        f"{usage.used} of max_disk {limits.max_bytes} bytes in use",
        f"{max(usage.free - limits.headroom, 0)} bytes free on the filesystem",
    ]
    if over_max > 0:
        parts.append(f"{over_max} bytes over max_disk")
    if over_free > 0:
        parts.append(f"{over_free} bytes more than the filesystem has free")
    if pinned:
        parts.append(f"pinned by ?sync: {', '.join(c.name for c in pinned)} ({sum(c.size for c in pinned)} bytes)")
    others = [c for c in copies if c.protected and not c.pinned]
    if others:
        parts.append(f"kept otherwise (in use or orphans): {sum(c.size for c in others)} bytes")
    if kept:
        parts.append(
            f"{sum(c.size for c in kept)} bytes of other copies, of which only those held by "
            f"min_copies ({limits.min_copies}) other passing nodes may be evicted"
        )
    return "; ".join(parts)
