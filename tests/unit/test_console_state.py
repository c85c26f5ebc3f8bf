"""The web console's own decisions (engine/console.py): an object's overall state, and the
summary it builds from rollout.assemble (node states, targets and counts are tested in
test_rollout_status.py)."""

from tuggle_agent.consul.kv import Listing
from tuggle_agent.engine.console import Console, Poll
from tuggle_agent.objects.metadata import ObjectMeta, SyncSpec

META = ObjectMeta(name="a.bin", size=1000, sha256="0" * 64, version="v1")
SYNCED = ObjectMeta(name="a.bin", size=1000, sha256="0" * 64, version="v1", sync=SyncSpec(requested_at="x"))


def inst(node, status="passing"):
    return {
        "Node": {"Node": node, "Address": "10.0.0.1"},
        "Service": {"Tags": [], "Address": "", "Port": 8900},
        "Checks": [{"CheckID": "service:tuggle", "Name": "tuggle", "Status": status, "Output": ""}],
    }


def poll(instances, holders=(), relays=None, records=None, node_status=None) -> Poll:
    """`holders`: the nodes whose holder key of a.bin's version is in Consul."""
    nodes = Console.__new__(Console)._instances(instances)
    listing = Listing({META.name: META}, [])
    held = {"a.bin": set(holders)}
    return Poll(instances, nodes, listing, held, set(), set(), relays or {}, records or {}, node_status or {})


def summary(meta, p: Poll) -> dict:
    console = Console.__new__(Console)
    console.ns = "tuggle"
    return console._summary(meta, p)


def test_object_states():
    def rows(*states):
        return [{"node": f"node{i}", "state": s} for i, s in enumerate(states, 1)]

    assert Console._state(rows("complete", "missing"), 1, [], META) == "complete"  # no ?sync: one holder is enough
    assert Console._state(rows("complete", "missing"), 1, ["node1", "node2"], SYNCED) == "rolling out"
    assert Console._state(rows("complete", "fetching"), 1, [], META) == "rolling out"
    assert Console._state(rows("complete", "complete"), 2, ["node1", "node2"], SYNCED) == "complete"
    assert Console._state(rows("down", "missing"), 0, [], META) == "no passing holder"
    assert Console._state(rows("complete", "hook_failed"), 2, [], META) == "failed hooks"


def test_summary_uses_the_rollout_rows_and_keeps_the_console_keys():
    fetch = {"fetching": [{"name": "a.bin", "version": "v1", "verified": 300, "source": "node1", "rate": 512.0}]}
    p = poll(
        # node3's key went with its session when its check turned critical
        [inst("node1"), inst("node2"), inst("node3", status="critical")],
        holders={"node1"},
        relays={("a.bin", "v1"): {"node2"}},
        node_status={"node2": fetch},
    )
    s = summary(META, p)
    assert [s[k] for k in ("holders", "holder_nodes", "no_passing_holder")] == [1, ["node1"], False]
    assert [r["state"] for r in s["nodes"]] == ["complete", "fetching", "down"]
    assert (s["nodes"][1]["bytes_verified"], s["nodes"][1]["source"], s["nodes"][1]["rate"]) == (300, "node1", 512.0)
    assert s["targets"] == [] and s["complete_targets"] == 0  # no ?sync: nobody is asked to prefetch
    assert s["state"] == "rolling out" and s["complete"] == 1 and s["failed"] == []
    assert s["sync"] is None and s["name"] == "a.bin" and s["size"] == 1000


def test_summary_of_a_sync_follows_its_targets_and_hook_records():
    spec = SyncSpec(node="^node", requested_at="x")
    meta = ObjectMeta(name="a.bin", size=1, sha256="0" * 64, version="v1", sync=spec)
    p = poll([inst("node1"), inst("node2"), inst("web3")], holders={"node1"})
    s = summary(meta, p)
    assert s["targets"] == ["node1", "node2"] and s["complete_targets"] == 1
    assert s["state"] == "rolling out" and s["sync"]["requested_at"] == "x"
    failed = {("a.bin", "v1"): {"node2": {"post_download": "failed", "error": "exit 1"}}}
    s = summary(meta, poll([inst("node1"), inst("node2")], holders={"node1", "node2"}, records=failed))
    assert s["failed"] == ["node2"] and s["state"] == "failed hooks"
    assert "exit 1" in s["nodes"][1]["detail"]
