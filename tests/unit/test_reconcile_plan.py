"""Reconcile decisions: a copy goes only on positive evidence (a tombstone of its version,
or another version in KV); everything else keeps the bytes."""

from tuggle_agent.engine.reconcile import LocalCopy, evidence_of_removal, plan
from tuggle_agent.objects.metadata import ObjectMeta, SyncSpec

SHA = "a" * 64


def meta(name: str, version: str = "v1", sync: SyncSpec | None = None, sha: str = SHA) -> ObjectMeta:
    return ObjectMeta(name=name, size=1, sha256=sha, version=version, sync=sync)


def copy(name: str, version: str = "v1", sha: str = SHA) -> LocalCopy:
    return LocalCopy(name, version, sha)


def run(local=(), metas=(), tombstones=(), fetching=None, before=None, applies=lambda s: True):
    return plan(
        {c.name: c for c in local}, {m.name: m for m in metas}, set(tombstones), fetching or {}, before or {}, applies
    )


def test_copy_matching_kv_is_kept():
    p = run([copy("a")], [meta("a")])
    assert [m.name for m in p.keep] == ["a"] and not p.drop and not p.orphans


def test_empty_listing_deletes_nothing():
    # A typo'd namespace, an emptied KV or a token without read all list nothing.
    p = run([copy("a"), copy("b")], [])
    assert not p.drop
    assert [c.name for c, _ in p.orphans] == ["a", "b"]


def test_tombstone_of_that_version_removes_the_copy():
    p = run([copy("a", "v1")], [], tombstones=[("a", "v1")])
    assert p.drop == [("a", "it was deleted")] and not p.orphans


def test_tombstone_of_another_version_is_not_evidence():
    p = run([copy("a", "v1")], [], tombstones=[("a", "v0")])
    assert not p.drop and [c.name for c, _ in p.orphans] == ["a"]


def test_another_version_in_kv_replaces_the_copy():
    p = run([copy("a", "v1")], [meta("a", "v2")])
    assert p.drop == [("a", "Consul holds another version")]


def test_same_version_other_checksum_is_kept_as_orphan_not_deleted():
    p = run([copy("a", "v1", sha=SHA)], [meta("a", "v1", sha="b" * 64)])
    assert not p.drop and not p.keep
    assert "another SHA-256" in p.orphans[0][1]


def test_sync_targets_not_held_are_prefetched_once():
    spec = SyncSpec(node="node2")
    p = run([], [meta("a", sync=spec), meta("b"), meta("c", sync=spec)], fetching={"c": "v1"})
    assert [m.name for m in p.prefetch] == ["a"]


def test_sync_not_applying_to_this_node_is_not_prefetched():
    p = run([], [meta("a", sync=SyncSpec(node="other"))], applies=lambda s: s.node != "other")
    assert p.prefetch == []


def test_held_sync_target_is_not_prefetched_but_replaced_version_is():
    spec = SyncSpec()
    p = run([copy("a", "v1"), copy("b", "v1")], [meta("a", "v1", sync=spec), meta("b", "v2", sync=spec)])
    assert [m.name for m in p.prefetch] == ["b"]


def test_fetch_is_cancelled_only_on_evidence_and_only_if_older_than_the_listing():
    metas = [meta("a", "v2"), meta("c", "v1")]
    p = run(
        [],
        metas,
        tombstones=[("d", "v1")],
        fetching={"a": "v1", "b": "v1", "c": "v1", "d": "v1", "e": "v9"},
        before={"a": "v1", "b": "v1", "c": "v1", "d": "v1"},
    )
    # a: KV moved on; d: tombstoned; b: merely missing (kept going); c: current; e: younger than the listing
    assert sorted(n for n, _ in p.cancel) == ["a", "d"]


def test_evidence_of_removal():
    metas = {"a": meta("a", "v2")}
    assert evidence_of_removal("a", "v1", metas, set()) == "Consul holds another version"
    assert evidence_of_removal("a", "v2", metas, {("a", "v2")}) is None  # KV still holds it: events can't delete
    assert evidence_of_removal("b", "v1", metas, set()) is None
    assert evidence_of_removal("b", "v1", metas, {("b", "v1")}) == "it was deleted"
