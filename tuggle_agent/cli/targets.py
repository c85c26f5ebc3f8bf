"""Rollout targets for `tuggle-agent wait` and `put --wait`: pure logic, no I/O.

A TARGET says how many of an object's target nodes must hold a complete copy:

    all     every node in the status document's "targets" (the nodes a ?sync
            targets, or every tuggle node when the object has no sync)
    N       at least N of them (a whole number >= 1)
    P%      at least P percent of them, rounded up (0 < P <= 100; 12.5% is fine)

It is reached when the status document's "complete_targets" >= needed(target, len(targets)).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

TARGET_HELP = "all | N | P% (all: every node the sync targets, or every tuggle node; N nodes; P percent, rounded up)"


@dataclass(frozen=True)
class Target:
    kind: str  # "all", "count" or "percent"
    value: float = 0

    def __str__(self) -> str:
        if self.kind == "all":
            return "all"
        if self.kind == "count":
            return str(int(self.value))
        return f"{self.value:g}%"


def parse_target(text: str) -> Target:
    """`all`, `N` or `P%`; ValueError with the rule otherwise."""
    s = text.strip().lower()
    if s == "all":
        return Target("all")
    if re.fullmatch(r"[0-9]+", s):
        n = int(s)
        if n >= 1:
            return Target("count", n)
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)%", s)
    if m:
        p = float(m.group(1))
        if 0 < p <= 100:
            return Target("percent", p)
    raise ValueError(f"expected a target: {TARGET_HELP}; got {text!r}")


def needed(target: Target, total: int) -> int:
    """How many complete target nodes reach `target` among `total` target nodes."""
    if target.kind == "all":
        return total
    if target.kind == "count":
        return int(target.value)
    # Integer arithmetic on hundredths of a percent: 64.4% of 250 is exactly 161, not 161.00000000000003 -> 162.
    return math.ceil(round(target.value * 100) * total / 10000)


def reached(target: Target, status: dict) -> bool:
    """Whether a `GET /<name>?status` document shows `target` reached."""
    return int(status.get("complete_targets", 0)) >= needed(target, len(status.get("targets") or []))


def shortfall(status: dict) -> tuple[list[dict], list[dict]]:
    """(missing, failing) node entries among the targets: a target node without a
    complete copy is missing; one whose state is hook_failed or down, or that the
    document lists in "failed", is failing (and not also missing)."""
    targets = set(status.get("targets") or [])
    failed = set(status.get("failed") or [])
    entries = {n.get("node"): n for n in status.get("nodes") or []}
    missing, failing = [], []
    for node in sorted(targets | failed):
        entry = entries.get(node, {"node": node, "state": "missing", "detail": "not reported"})
        if entry.get("state") == "complete" and node not in failed:
            continue
        if node in failed or entry.get("state") in ("hook_failed", "down"):
            failing.append(entry)
        elif node in targets:
            missing.append(entry)
    return missing, failing
