"""What a node does with its copies, given what Consul says: pure decisions, unit-tested.

The rule that matters most: a copy is removed only on positive evidence that its
version is gone --

  * a tombstone `<ns>.tombstones/<name>/<version>` (an explicit DELETE of that version), or
  * KV holding a *different* version of the name (a DELETE then PUT happened).

A key that is merely missing proves nothing: a typo'd namespace, an emptied or restored
KV, a token without read permission (Consul answers 404 to a denied recursive read) all
look like "no objects".  Such a copy is kept as an *orphan*: not advertised (GETs would
404 anyway), reported, and re-publishable with `tuggle-agent adopt`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ..objects.metadata import ObjectMeta, SyncSpec


@dataclass(frozen=True)
class LocalCopy:
    name: str
    version: str
    sha256: str


@dataclass
class Plan:
    keep: list[ObjectMeta] = field(default_factory=list)  # advertise
    drop: list[tuple[str, str]] = field(default_factory=list)  # (name, why): remove the copy
    orphans: list[tuple[LocalCopy, str]] = field(default_factory=list)  # (copy, why): keep it, stop advertising
    prefetch: list[ObjectMeta] = field(default_factory=list)  # sync targets we lack
    cancel: list[tuple[str, str]] = field(default_factory=list)  # (name, why): stop a running fetch


def evidence_of_removal(
    name: str, version: str, metas: dict[str, ObjectMeta], tombstones: Iterable[tuple[str, str]]
) -> str | None:
    """Why `version` of `name` is gone for sure, or None if nothing proves it."""
    meta = metas.get(name)
    if meta is not None and meta.version != version:
        return "Consul holds another version"
    if meta is None and (name, version) in set(tombstones):
        return "it was deleted"
    return None


def plan(
    local: dict[str, LocalCopy],
    metas: dict[str, ObjectMeta],
    tombstones: Iterable[tuple[str, str]],
    fetching: dict[str, str],
    fetching_before: dict[str, str],
    applies: Callable[[SyncSpec], bool],
) -> Plan:
    """`local`: complete copies by name; `metas`: KV's objects by name (valid ones only);
    `fetching`: name -> version of every running fetch; `fetching_before`: those that
    started before the listing was read (a listing can't judge a fetch younger than it);
    `applies`: whether a sync request targets this node."""
    tombs = set(tombstones)
    p = Plan()
    for name, copy in sorted(local.items()):
        meta = metas.get(name)
        if meta is not None and meta.version == copy.version and meta.sha256 == copy.sha256:
            p.keep.append(meta)
            continue
        why = evidence_of_removal(name, copy.version, metas, tombs)
        if why is not None:
            p.drop.append((name, why))
        elif meta is not None:
            # Same version, another checksum: KV was rewritten by hand or by an attacker.
            # Our bytes were verified when they landed; keep them and let an operator look.
            p.orphans.append((copy, "Consul's metadata for this version has another SHA-256"))
        else:
            p.orphans.append((copy, "Consul KV has no object of this name (and no tombstone)"))
    for name, version in sorted(fetching_before.items()):
        why = evidence_of_removal(name, version, metas, tombs)
        if why is not None:
            p.cancel.append((name, why))
    held = {m.name for m in p.keep}
    for meta in sorted(metas.values(), key=lambda m: m.name):
        if (
            meta.sync is not None
            and meta.name not in held
            and fetching.get(meta.name) != meta.version
            and applies(meta.sync)
        ):
            p.prefetch.append(meta)
    return p
