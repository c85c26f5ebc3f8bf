"""The web console's decisions (engine/console.py): a node's state for one object and an
object's overall state, from what Consul and the nodes' /_tuggle/status said."""

from tuggle_agent.engine.console import Console, TuggleNode
from tuggle_agent.objects.metadata import ObjectMeta, SyncSpec

META = ObjectMeta(name="a.bin", size=1000, sha256="0" * 64, version="v1")
SYNCED = ObjectMeta(name="a.bin", size=1000, sha256="0" * 64, version="v1", sync=SyncSpec(requested_at="x"))


def node(name="node2", passing=True, tags=(), local=None, fetching=None, answered=True) -> TuggleNode:
    n = TuggleNode(name, f"http://{name}", passing, set(tags), [], status={} if answered else None)
    n.local = local or {}
    n.fetching = fetching or {}
    if not answered:
        n.error = "no status: ReadTimeout"
    return n


def row(n: TuggleNode, relaying=(), meta=META) -> dict:
    return Console._row(meta, n, set(relaying))


def test_node_states():
    held = {"a.bin": {"name": "a.bin", "version": "v1", "source": "node1", "status": {}}}
    assert row(node(tags=[META.id], local=held))["state"] == "complete"
    assert row(node(tags=[META.id], local=held))["bytes_verified"] == 1000
    failed = {"a.bin": {**held["a.bin"], "status": {"post_download": "failed", "post_download_error": "exit 1"}}}
    r = row(node(local=failed))
    assert r["state"] == "hook_failed" and "exit 1" in r["detail"]
    old = {"a.bin": {**held["a.bin"], "version": "v0"}}
    assert row(node(local=old))["state"] == "missing"  # another version is not this object
    fetch = {"a.bin": {"name": "a.bin", "version": "v1", "verified": 300, "source": "node1", "rate": 512.0}}
    r = row(node(fetching=fetch))
    assert (r["state"], r["bytes_verified"], r["source"], r["rate"]) == ("fetching", 300, "node1", 512.0)
    assert row(node(), relaying=["node2"])["state"] == "fetching"  # its relay entry, status not in yet
    assert row(node(passing=False))["state"] == "down"
    assert row(node())["state"] == "missing"
    # A holder whose status did not answer in time is still shown as holding it.
    assert row(node(tags=[META.id], answered=False))["state"] == "complete"


def test_object_states():
    def rows(*states):
        return [{"node": f"node{i}", "state": s} for i, s in enumerate(states, 1)]

    assert Console._state(rows("complete", "missing"), 1, [], META) == "complete"  # no ?sync: one holder is enough
    assert Console._state(rows("complete", "missing"), 1, ["node1", "node2"], SYNCED) == "rolling out"
    assert Console._state(rows("complete", "fetching"), 1, [], META) == "rolling out"
    assert Console._state(rows("complete", "complete"), 2, ["node1", "node2"], SYNCED) == "complete"
    assert Console._state(rows("down", "missing"), 0, [], META) == "no passing holder"
    assert Console._state(rows("complete", "hook_failed"), 2, [], META) == "failed hooks"


def test_sync_targets_follow_the_filters():
    nodes = [node("node1"), node("node2"), node("web3")]
    spec = SyncSpec(node="^node", requested_at="x")
    meta = ObjectMeta(name="a.bin", size=1, sha256="0" * 64, sync=spec)
    assert Console._targets(meta, nodes, "tuggle") == ["node1", "node2"]
    assert Console._targets(META, nodes, "tuggle") == []
