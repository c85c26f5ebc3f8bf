"""The change-log watch (kv_watch: changes, the default): a change costs each node a
bounded read, whatever the namespace holds; entries are hints checked against KV; a node
that cannot tell what it missed reconciles fully; concurrent writers lose no entry; the
keyprefix mode (clusters with Go tuggle nodes) and the periodic full reconcile still work."""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tuggle_agent.harness import TuggleCluster, wait_until
from tuggle_agent.objects import changelog
from tuggle_agent.objects.names import object_id

LIST_PATH = "/v1/kv/tuggle/"  # a GET of this path is a read of every object's metadata


@pytest.fixture(scope="module")
def log_cluster3(tmp_path_factory):
    """Three nodes, change-log watches with http handlers (as test_safety_orphans)."""
    with TuggleCluster(
        tmp_path_factory.mktemp("changelog"), nodes=3, watches="http", settings={"holder_wait": "3s"}
    ) as c:
        yield c


def holds(agent, name: str, body: bytes) -> bool:
    p = agent.local_file(name)
    return p.exists() and p.read_bytes() == body


def the_log(c: TuggleCluster) -> list[changelog.Change]:
    _, entry = c.consul().kv.get("tuggle.changes")
    changes = changelog.parse(entry["Value"])
    assert changes is not None, entry
    return changes


def full_reads(tallies) -> int:
    return sum(
        n.requests for t in tallies for (_, method, path), n in t.take().items() if (method, path) == ("GET", LIST_PATH)
    )


def delivery(c: TuggleCluster, value: bytes, **fields) -> dict:
    """What Consul's key watch on the change-log would deliver if the log held `value`."""
    _, entry = c.consul().kv.get("tuggle.changes")
    return {**entry, "Value": base64.b64encode(value).decode(), **fields}


def post_watch(agent, data) -> requests.Response:
    return requests.post(agent.url + "/_tuggle/watch", data=json.dumps(data), timeout=30)


def test_a_sync_and_a_delete_never_read_the_whole_namespace(log_cluster3, unique_name):
    c = log_cluster3
    n1 = c[0]
    for i in range(20):  # a namespace that is not empty
        assert n1.put(unique_name(), f"filler {i}".encode()).status_code == 201
    marker = unique_name()
    assert n1.put(marker + "?sync", b"m").status_code == 201
    for a in c.agents:
        wait_until(lambda: holds(a, marker, b"m"), 20, what=f"{a.name} to settle")
    tallies = [c.dev.node(a.name).count_requests() for a in c.agents]
    full_reads(tallies)  # from zero

    name = unique_name()
    body = os.urandom(150_000)
    assert n1.put(name + "?sync", body).status_code == 201
    for a in c.agents:
        wait_until(lambda: holds(a, name, body), 20, what=f"{a.name} to prefetch")
    assert requests.delete(f"{n1.url}/{name}", timeout=10).status_code == 200
    for a in c.agents:
        wait_until(lambda: not a.local_file(name).exists(), 15, what=f"{a.name} to drop the deleted copy")
    # the events and the change-log both reached every node, and none listed every object
    assert full_reads(tallies) == 0
    assert [(e.op, e.name) for e in the_log(c) if e.name == name] == [("put", name), ("delete", name)]


def test_forged_change_log_entries_delete_nothing(log_cluster3, unique_name):
    c = log_cluster3
    n1, n2, _ = c.agents
    name = unique_name()
    body = os.urandom(60_000)
    assert n1.put(name + "?sync", body).status_code == 201
    for a in c.agents:
        wait_until(lambda: holds(a, name, body), 20, what=f"{a.name} to prefetch")
    version = next(e.version for e in the_log(c) if e.name == name)
    newest = the_log(c)[-1].seq
    forged = changelog.appended(the_log(c), "delete", name, version)
    # As Consul's key watch would deliver it (a forger with KV write could put it there)...
    r = post_watch(n2, delivery(c, changelog.encode(forged)))
    assert r.status_code == 200, r.text
    assert f"{newest + 1} delete {name}" in json.dumps(r.json())  # applied as a hint: KV was read ...
    # ... and KV still holds that version, with no tombstone: nothing is removed
    assert holds(n2, name, body) and name not in {o["name"] for o in n2_status(n2)["orphans"]}
    # ... and written into Consul itself: every node checks KV, none deletes
    c.consul().kv.put("tuggle.changes", changelog.encode(changelog.appended(the_log(c), "delete", name, version)))
    for junk in (b"{not json", json.dumps({"v": 1, "changes": [{"seq": 1, "op": "rm -rf", "name": "x"}]}).encode()):
        r = post_watch(n2, delivery(c, junk))
        assert r.status_code == 200 and "malformed" in r.text, r.text  # a full reconcile instead
    r = post_watch(n2, delivery(c, changelog.encode(forged), Key="elsewhere"))
    assert r.status_code == 200, r.text
    marker = unique_name()
    assert n1.put(marker + "?sync", b"m").status_code == 201
    for a in c.agents:
        wait_until(lambda: holds(a, marker, b"m"), 20, what=f"{a.name} to apply the next change")
        assert holds(a, name, body), f"{a.name} removed a copy on the change-log's word"
    assert c.holders(name) == {"node1", "node2", "node3"}


def n2_status(agent) -> dict:
    return requests.get(agent.url + "/_tuggle/status", timeout=5).json()


def test_a_node_that_missed_more_than_the_log_holds_reconciles_fully(log_cluster3, unique_name):
    """node3's Consul agent is down (its tuggle-agent keeps running) while more changes than
    the log keeps happen, one of them the DELETE of a copy node3 holds: when its agent is
    back, the watch's first run finds a gap, and a full reconcile applies the DELETE."""
    c = log_cluster3
    n1, _, n3 = c.agents
    name = unique_name()
    body = os.urandom(50_000)
    assert n1.put(name + "?sync", body).status_code == 201
    wait_until(lambda: holds(n3, name, body), 20, what="node3 to prefetch")
    seen = len(n3.log())
    c.dev.stop_node("node3")
    try:
        assert requests.delete(f"{n1.url}/{name}", timeout=10).status_code == 200
        for _ in range(changelog.LENGTH + 1):
            assert n1.put(unique_name(), b"x").status_code == 201
        assert holds(n3, name, body)  # node3 heard nothing yet
    finally:
        c.dev.restart_node("node3")
    wait_until(lambda: not n3.local_file(name).exists(), 20, what="node3 to drop the deleted copy")
    assert "changes were missed since the last one applied; reconciling with all of KV" in n3.log()[seen:]
    n3.wait_ready()


def test_concurrent_writers_lose_no_change_log_entry(log_cluster3, unique_name):
    c = log_cluster3
    names = [unique_name() for _ in range(8)]
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda i: c[i % 3].put(names[i], b"c%d" % i).status_code, range(8)))
    assert codes == [201] * 8
    logged = [e for e in the_log(c) if e.name in names]
    assert sorted(e.name for e in logged) == sorted(names)
    assert "overwrote it" not in "".join(a.log() for a in c.agents)  # all appended with check-and-set


def test_fetch_events_with_unknown_ids_do_not_list_every_object_each_time(log_cluster3):
    c = log_cluster3
    n2 = c[1]
    tally = c.dev.node("node2").count_requests()
    full_reads([tally])
    for _ in range(5):
        oid = object_id(uuid.uuid4().hex)
        payload = base64.b64encode(f"FETCH:{uuid.uuid4().hex}:{oid}".encode()).decode()
        r = post_watch(n2, [{"ID": str(uuid.uuid4()), "Name": "tuggle", "LTime": 1, "Payload": payload}])
        assert r.status_code == 200 and "unknown object id" in r.text, r.text
    assert full_reads([tally]) <= 1


def test_keyprefix_mode_acts_on_metadata_written_without_the_change_log(tmp_path, unique_name):
    """kv_watch: keyprefix, for clusters where Go tuggle nodes, which write no change-log,
    PUT too: a sync request written straight into a metadata key (no event, no change-log
    entry) is still prefetched, and a DELETE still removes every copy."""
    with TuggleCluster(tmp_path, nodes=2, watches="http", settings={"kv_watch": "keyprefix"}) as c:
        n1, n2 = c.agents
        watches = json.loads((n2.dir / "consul.d" / "tuggle-agent-watches.json").read_text())["watches"]
        assert {w["type"] for w in watches} == {"keyprefix", "event"}
        name = unique_name()
        body = os.urandom(40_000)
        assert n1.put(name, body).status_code == 201
        kv = c.consul().kv
        _, entry = kv.get(f"tuggle/{name}")
        kv.put(f"tuggle/{name}", json.dumps({**json.loads(entry["Value"]), "sync": {}}), cas=entry["ModifyIndex"])
        wait_until(lambda: holds(n2, name, body), 20, what="node2 to prefetch")
        assert requests.delete(f"{n1.url}/{name}", timeout=10).status_code == 200
        wait_until(lambda: not n2.local_file(name).exists(), 15, what="node2 to drop the deleted copy")


def test_periodic_full_reconcile_catches_a_change_the_log_never_saw(tmp_path, unique_name):
    """A version deleted behind the change-log's back (tombstone, then the metadata key, as
    a Go tuggle node deletes): the event is not fired and the log says nothing, so only the
    periodic full reconcile can see it -- and it removes the copy on the tombstone."""
    with TuggleCluster(tmp_path, nodes=2, watches="http", settings={"full_reconcile_interval": "2s"}) as c:
        n1, n2 = c.agents
        name = unique_name()
        body = os.urandom(40_000)
        assert n1.put(name + "?sync", body).status_code == 201
        wait_until(lambda: holds(n2, name, body), 20, what="node2 to prefetch")
        version = requests.get(f"{n1.url}/", timeout=5).json()[0]["version"]
        kv = c.consul().kv
        kv.put(f"tuggle.tombstones/{name}/{version}", json.dumps({"deleted_at": time.time()}))
        kv.delete(f"tuggle/{name}")
        for a in c.agents:
            wait_until(lambda: not a.local_file(name).exists(), 15, what=f"{a.name} to drop the deleted copy")
