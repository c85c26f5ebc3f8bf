"""`GET /<name>?status` assembly and `GET /` holder counts (engine/rollout.py), pure:
Consul rows, relay entries, status records and nodes' /_tuggle/status answers in, JSON out."""

import json

import pytest

from tuggle_agent.engine.rollout import STATES, assemble, passing, sync_matcher, with_holders
from tuggle_agent.objects.metadata import ObjectMeta, SyncSpec

META = ObjectMeta(name="app.tgz", size=1000, sha256="b" * 64, version="v1", created_at="2026-11-27T05:05:57.977770Z")
OTHER = ObjectMeta(name="other.tgz", size=5, sha256="c" * 64, version="v9")


def inst(node, tags=(), service="passing", serf="passing", output=""):
    return {
        "Node": {"Node": node, "Address": "10.0.0." + node[-1]},
        "Service": {"ID": "tuggle", "Service": "tuggle", "Tags": list(tags), "Address": "", "Port": 8900},
        "Checks": [
            {"CheckID": "serfHealth", "Name": "Serf Health Status", "Status": serf, "Output": ""},
            {"CheckID": "service:tuggle", "Name": "Service 'tuggle' check", "Status": service, "Output": output},
        ],
    }


def fetching(verified, rate=0.0, source="node1", meta=META):
    return {
        "fetching": [{"name": meta.name, "version": meta.version, "verified": verified, "rate": rate, "source": source}]
    }


def status_of(
    meta=META, instances=(), members=(), consul_nodes=(), relay=(), records=None, node_status=None, holders=None
):
    """`holders` defaults to the instances tagged with the object's id: these tests mark a
    holder as holder_tags would; the holder index hands assemble the same set of nodes."""
    if holders is None:
        holders = [i["Node"]["Node"] for i in instances if meta.id in i["Service"]["Tags"]]
    return assemble(
        meta,
        instances,
        holders,
        members,
        consul_nodes,
        relay,
        records or {},
        node_status or {},
        sync_matcher(meta.sync, "tuggle"),
    )


def rows(out):
    return {r["node"]: r for r in out["nodes"]}


def synced(**filters):
    return ObjectMeta(
        name="s.tgz",
        size=100,
        sha256="d" * 64,
        version="v2",
        sync=SyncSpec(**filters, requested_at="2026-11-27T00:00:00Z"),
    )


def test_shape_and_key_order_are_what_the_client_parses():
    out = status_of(instances=[inst("node1", [META.id])])
    assert list(out) == [
        "name",
        "version",
        "size",
        "sha256",
        "created_at",
        "sync",
        "nodes",
        "targets",
        "complete",
        "complete_targets",
        "failed",
    ]
    assert (out["name"], out["version"], out["size"], out["sha256"], out["created_at"]) == (
        "app.tgz",
        "v1",
        1000,
        "b" * 64,
        "2026-11-27T05:05:57.977770Z",
    )
    assert out["sync"] is None
    assert out["nodes"] == [
        {
            "node": "node1",
            "state": "complete",
            "passing": True,
            "bytes_verified": 1000,
            "rate": 0.0,
            "source": "",
            "detail": "",
        }
    ]
    json.dumps(out)  # serialisable as is


def test_complete_needs_the_tag_of_this_object_on_a_passing_instance():
    out = status_of(instances=[inst("node1", [META.id]), inst("node2", [OTHER.id]), inst("node3", [META.id, OTHER.id])])
    r = rows(out)
    assert [r[n]["state"] for n in ("node1", "node2", "node3")] == ["complete", "missing", "complete"]
    assert out["complete"] == 2 and out["complete_targets"] == 2


def test_rows_are_sorted_by_node_and_every_state_is_known():
    out = status_of(instances=[inst("node3"), inst("node1", [META.id]), inst("node2")])
    assert [r["node"] for r in out["nodes"]] == ["node1", "node2", "node3"]
    assert {r["state"] for r in out["nodes"]} <= set(STATES)


def test_fetching_from_the_node_status_with_bytes_rate_and_source():
    out = status_of(
        instances=[inst("node1", [META.id]), inst("node3")],
        relay=["node3"],
        node_status={"node3": fetching(400, 123456.7, "node1")},
    )
    r = rows(out)["node3"]
    assert r["state"] == "fetching" and r["bytes_verified"] == 400 and r["rate"] == 123456.7
    assert r["source"] == "node1" and r["passing"] is True
    assert out["complete"] == 1


def test_fetching_without_relay_entry_store_and_forward():
    r = rows(status_of(instances=[inst("node2")], node_status={"node2": fetching(10, 5.0)}))["node2"]
    assert r["state"] == "fetching" and r["bytes_verified"] == 10


def test_a_fetch_of_another_version_or_object_is_not_this_fetch():
    old = ObjectMeta(name=META.name, size=1000, sha256="b" * 64, version="old")
    r = rows(status_of(instances=[inst("node2")], node_status={"node2": fetching(10, meta=old)}))["node2"]
    assert r["state"] == "missing"
    r = rows(status_of(instances=[inst("node2")], node_status={"node2": fetching(10, meta=OTHER)}))["node2"]
    assert r["state"] == "missing"


def test_relay_entry_with_unreadable_status_is_fetching_with_unknown_progress():
    out = status_of(instances=[inst("node2")], relay=["node2"], node_status={"node2": "ConnectTimeout: timed out"})
    r = rows(out)["node2"]
    assert r["state"] == "fetching" and r["bytes_verified"] == 0 and r["rate"] == 0.0
    assert "ConnectTimeout" in r["detail"]


def test_untrusted_numbers_from_a_peer_are_clamped():
    bad = {"fetching": [{"name": META.name, "version": "v1", "verified": 10**12, "rate": "fast", "source": 5}]}
    r = rows(status_of(instances=[inst("node2")], node_status={"node2": bad}))["node2"]
    assert r["bytes_verified"] == META.size and r["rate"] == 0.0 and r["source"] == ""
    assert "post_download" in r["detail"]  # all verified: the hooks are running
    neg = {"fetching": [{"name": META.name, "version": "v1", "verified": -5, "rate": True}]}
    r = rows(status_of(instances=[inst("node2")], node_status={"node2": neg}))["node2"]
    assert r["bytes_verified"] == 0 and r["rate"] == 0.0


def test_hook_failed_wins_over_complete_and_is_listed_in_failed():
    records = {"node2": {"post_download": "failed", "error": "exited with 3", "at": 1.0}}
    out = status_of(instances=[inst("node1", [META.id]), inst("node2", [META.id])], records=records)
    r = rows(out)["node2"]
    assert r["state"] == "hook_failed" and "exited with 3" in r["detail"] and r["bytes_verified"] == 1000
    assert out["failed"] == ["node2"] and out["complete"] == 1 and out["complete_targets"] == 1


def test_hook_failed_of_a_discarded_copy_and_malformed_records():
    records = {"node2": {"post_download": "failed"}, "node3": {"malformed": True}}
    out = status_of(instances=[inst("node2"), inst("node3")], records=records)
    assert rows(out)["node2"]["state"] == "hook_failed" and rows(out)["node2"]["bytes_verified"] == 0
    assert rows(out)["node3"]["state"] == "missing"
    assert out["failed"] == ["node2"]


@pytest.mark.parametrize("service,serf", [("critical", "passing"), ("passing", "critical"), ("warning", "passing")])
def test_down_when_any_check_is_not_passing(service, serf):
    out = status_of(instances=[inst("node1", [META.id]), inst("node2", [META.id], service, serf, "connection refused")])
    r = rows(out)["node2"]
    assert r["state"] == "down" and r["passing"] is False
    assert ("critical" in r["detail"]) or ("warning" in r["detail"])
    assert out["complete"] == 1


def test_down_wins_over_hook_failed_but_failed_still_lists_it():
    records = {"node2": {"post_download": "failed", "error": "x"}}
    out = status_of(instances=[inst("node2", service="critical")], records=records)
    assert rows(out)["node2"]["state"] == "down" and out["failed"] == ["node2"]


def test_member_without_registration_is_down_while_its_consul_node_exists():
    out = status_of(
        instances=[inst("node1", [META.id])],
        members=["node1", "node3", "gone"],
        consul_nodes=["node1", "node2", "node3"],
    )
    assert [r["node"] for r in out["nodes"]] == ["node1", "node3"]  # "gone" left Consul
    r = rows(out)["node3"]
    assert r["state"] == "down" and r["passing"] is False and "not registered" in r["detail"]
    assert out["targets"] == ["node1", "node3"]


def test_missing_details():
    out = status_of(instances=[inst("node1"), inst("node2")], node_status={"node2": "HTTP 500"})
    assert "first GET" in rows(out)["node1"]["detail"]
    assert "HTTP 500" in rows(out)["node2"]["detail"]
    assert rows(out)["node2"]["state"] == "missing"


def test_a_holder_whose_status_cannot_be_read_is_still_complete():
    # (moved from the web console's own row logic, which now uses assemble)
    out = status_of(instances=[inst("node1", [META.id])], node_status={"node1": "no status: ReadTimeout"})
    assert rows(out)["node1"]["state"] == "complete" and rows(out)["node1"]["bytes_verified"] == 1000


def test_another_version_held_locally_is_missing():
    other = ObjectMeta(name=META.name, size=1000, sha256="e" * 64, version="v0")
    out = status_of(instances=[inst("node2", [META.id])], node_status={"node2": fetching(10, meta=other)}, meta=other)
    assert rows(out)["node2"]["state"] == "complete"  # the tag is the name's id: held as the current version
    out = status_of(instances=[inst("node2")], node_status={"node2": fetching(10, meta=other)})
    assert rows(out)["node2"]["state"] == "missing"


def test_passing_keeps_instances_whose_checks_all_pass():
    kept = passing([inst("node1"), inst("node2", service="critical"), inst("node3", serf="warning")])
    assert [i["Node"]["Node"] for i in kept] == ["node1"]


def test_targets_every_node_without_sync():
    out = status_of(instances=[inst("node1"), inst("node2")], members=["node3"], consul_nodes=["node3"])
    assert out["targets"] == ["node1", "node2", "node3"] and out["sync"] is None


def test_targets_with_a_node_filter_and_complete_targets():
    meta = synced(node="node[12]$")
    out = status_of(
        meta,
        instances=[inst("node1", [meta.id]), inst("node2"), inst("node3", [meta.id]), inst("node12")],
    )
    assert out["sync"] == {"node": "node[12]$", "service": "", "tag": ""}
    assert out["targets"] == ["node1", "node2"]  # Go regexp search: node12 does not end in node[12]
    assert out["complete"] == 2 and out["complete_targets"] == 1
    r = rows(out)
    assert r["node3"]["detail"] == ""  # a complete holder needs no reason
    assert r["node2"]["detail"] == "does not hold it and is not fetching it"


def test_targets_with_service_and_tag_filters_use_the_instance_tags():
    meta = synced(service="^tuggle$", tag="^web$")
    out = status_of(meta, instances=[inst("node1", ["web"]), inst("node2", ["db"]), inst("node3", ["web", meta.id])])
    assert out["targets"] == ["node1", "node3"]
    assert rows(out)["node2"]["detail"] == "not targeted by the sync filters"
    assert out["complete_targets"] == 1
    none = synced(service="^other$")
    assert status_of(none, instances=[inst("node1")])["targets"] == []


def test_counts_mixed_rollout():
    meta = synced(node="^node[1-4]$")
    out = status_of(
        meta,
        instances=[
            inst("node1", [meta.id]),
            inst("node2"),
            inst("node3", [meta.id]),
            inst("node4", service="critical"),
            inst("node5", [meta.id]),
        ],
        relay=["node2"],
        records={"node3": {"post_download": "failed", "error": "boom"}},
        node_status={"node2": fetching(50, 10.0, "node1", meta)},
    )
    assert [r["state"] for r in out["nodes"]] == ["complete", "fetching", "hook_failed", "down", "complete"]
    assert out["targets"] == ["node1", "node2", "node3", "node4"]
    assert out["complete"] == 2 and out["complete_targets"] == 1 and out["failed"] == ["node3"]


def test_listing_adds_holder_counts_at_the_end():
    metas = [META, OTHER]
    out = with_holders(metas, {META.name: {"node1", "node2"}, "gone.tgz": {"node3"}})
    assert list(out[0]) == [*META.to_dict(), "holders", "no_passing_holder"]
    assert (out[0]["holders"], out[0]["no_passing_holder"]) == (2, False)
    assert (out[1]["holders"], out[1]["no_passing_holder"]) == (0, True)
    assert with_holders([], {}) == []


def test_rollout_view_reads_every_object_in_one_read_as_per_object():
    """consul/rollout.py's bulk reads (the web console's poll) group the same entries
    relay_nodes / node_records return for one version."""
    from tuggle_agent.consul.keys import Keys
    from tuggle_agent.consul.rollout import RolloutView

    entries = {
        "tuggle.relay/": [
            {"Key": "tuggle.relay/app.tgz/v1/node2", "Session": "s1"},
            {"Key": "tuggle.relay/app.tgz/v1/node3", "Session": None},  # its fetch ended
            {"Key": "tuggle.relay/other.tgz/v9/node1", "Session": "s2"},
        ],
        "tuggle.status/": [
            {"Key": "tuggle.status/app.tgz/v1/node2", "Value": b'{"post_download": "failed"}'},
            {"Key": "tuggle.status/app.tgz/v1/node3", "Value": b"[1]"},
        ],
    }

    class KV:
        def get(self, prefix, recurse=False):
            assert recurse
            return 1, [e for rows in entries.values() for e in rows if e["Key"].startswith(prefix)] or None

    class Client:
        kv = KV()

    view = RolloutView(Client(), Keys("tuggle"))
    assert view.all_relay_nodes() == {("app.tgz", "v1"): {"node2"}, ("other.tgz", "v9"): {"node1"}}
    assert view.relay_nodes("app.tgz", "v1") == {"node2"}
    records = {"node2": {"post_download": "failed"}, "node3": {"malformed": True}}
    assert view.all_node_records() == {("app.tgz", "v1"): records}
    assert view.node_records("app.tgz", "v1") == records
    assert view.node_records("other.tgz", "v9") == {}
