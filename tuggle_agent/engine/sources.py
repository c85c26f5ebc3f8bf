"""Which holder a fetch pulls from next: a named policy, pure, with its own unit tests.

Inputs are what Consul said (complete holders sorted by RTT, partial holders ranked
before us by their relay announcement) and what this fetch has learned (holders that
failed it).  The order it returns:

1. partial holders ranked before us, the one announced just before us first: every
   fetcher taking its immediate predecessor builds the relay chain in one step, with no
   race for slots (README "Distribution speed");
2. complete holders, chosen at random among the `nearest` closest, so that concurrent
   fetchers spread over near holders instead of all hitting the single nearest one.

A holder that failed this fetch (corrupt bytes, broken or stalled stream, error answer)
is excluded for the rest of the fetch: retrying it at once is what made a bad only-copy
cost ~100 requests a second.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from ..consul.health import Holder


@dataclass(frozen=True)
class Candidate:
    holder: Holder
    kind: Literal["complete", "partial"]


class SourcePolicy:
    def __init__(self, nearest: int, rng: random.Random | None = None):
        self.nearest = nearest
        self.rng = rng or random.Random()

    def order(
        self, complete: list[Holder], upstream: list[str], peers: dict[str, Holder], excluded: set[str]
    ) -> list[Candidate]:
        """`complete`: passing holders nearest first; `upstream`: partial holders ranked
        before us, earliest first; `peers`: addresses of passing nodes by name."""
        usable = [h for h in complete if h.node not in excluded]
        near = usable[: self.nearest]
        self.rng.shuffle(near)
        ordered_complete = near + usable[self.nearest :]
        have = {h.node for h in usable}
        partial = [peers[n] for n in reversed(upstream) if n in peers and n not in excluded and n not in have]
        return [Candidate(h, "partial") for h in partial] + [Candidate(h, "complete") for h in ordered_complete]
