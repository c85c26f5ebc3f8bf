"""Issue 8 §1: a copy is removed only on positive evidence (a tombstone of its version,
or KV holding another version).  A missing key -- a typo'd namespace, an emptied KV, a
forged DELETE event -- keeps the copy as an orphan, and orphans can be adopted back."""

import base64
import json
import os
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tuggle_agent.harness import TuggleCluster, wait_until
from tuggle_agent.objects.names import object_id


@pytest.fixture(scope="module")
def orphan_cluster3(tmp_path_factory):
    """Three nodes with Consul watches (http handlers, so a KV change reconciles every
    node and a DELETE event reaches every node, as in production)."""
    with TuggleCluster(
        tmp_path_factory.mktemp("orphans"), nodes=3, watches="http", settings={"holder_wait": "3s"}
    ) as c:
        yield c


def status(agent) -> dict:
    return requests.get(agent.url + "/_tuggle/status", timeout=5).json()


def orphan_names(agent) -> set[str]:
    return {o["name"] for o in status(agent)["orphans"]}


def orphans_metric(agent) -> float:
    text = requests.get(agent.url + "/_tuggle/metrics", timeout=5).text
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith("tuggle_orphans ")]
    assert values, "no tuggle_orphans metric exposed"
    return values[0]


def version_of(agent, name: str) -> str:
    return next(o["version"] for o in requests.get(agent.url + "/", timeout=5).json() if o["name"] == name)


def held_by_two(cluster, name: str, body: bytes) -> None:
    """PUT on node1, fetched by node2: two complete, advertised holders."""
    n1, n2 = cluster.agents[:2]
    assert n1.put(name, body).status_code == 201
    assert n2.get(name).content == body
    wait_until(lambda: cluster.holders(name) == {"node1", "node2"}, 10, what="node1 and node2 tagged")


def test_restart_with_a_typo_namespace_keeps_the_copy_as_an_orphan(tmp_path, unique_name):
    # No watches here: a watch-driven reconcile that lands while a node stops re-registers
    # it (see test_safety_small.py::test_sigterm_during_reconciles_leaves_no_registration).
    with TuggleCluster(tmp_path, nodes=2, settings={"holder_wait": "3s"}) as c:
        n1, n2 = c.agents
        name = unique_name()
        body = os.urandom(100_000)
        assert n2.put(name, body).status_code == 201  # node2 holds the cluster's only copy
        wait_until(lambda: c.holders(name) == {"node2"}, 10, what="node2 tagged")
        n2.stop()
        n2.write_config(namespace="tuggel")
        try:
            # Not start(wait=True): that waits for a passing check of service "tuggle", and
            # with the typo the node registers as "tuggel".
            n2.start(wait=False)
            wait_until(lambda: requests.get(n2.url + "/?ping", timeout=1).ok, 30, what="node2 up as tuggel")
            assert n2.local_file(name).read_bytes() == body, "the only copy was deleted on a missing key"
            assert name in orphan_names(n2)
            assert orphans_metric(n2) >= 1
            assert "node2" not in c.holders(name)
            _, mine = c.consul("node2").catalog.service("tuggel")
            assert mine and all(object_id(name) not in e["ServiceTags"] for e in mine), (
                "an orphan is advertised under the typo'd namespace"
            )
            assert n2.log().count(f"keeping local copy of {name} as an orphan") == 1
            # a second reconcile keeps it too, and does not warn again
            assert requests.post(n2.url + "/_tuggle/reconcile", timeout=10).ok
            assert n2.local_file(name).read_bytes() == body
            assert n2.log().count(f"keeping local copy of {name} as an orphan") == 1
        finally:
            n2.stop()
            n2.write_config(namespace="tuggle")
            n2.start()
        wait_until(lambda: "node2" in c.holders(name), 10, what="node2 advertising again")
        assert name not in orphan_names(n2)
        assert n1.get(name).content == body


def test_emptied_kv_deletes_nothing_and_adopt_publishes_once(tmp_path, unique_name):
    with TuggleCluster(tmp_path, nodes=3, watches="http", settings={"holder_wait": "3s"}) as c:
        n1, n2, n3 = c.agents
        name, other = unique_name(), unique_name()
        body, other_body = os.urandom(300_000), os.urandom(50_000)
        held_by_two(c, name, body)
        assert n3.put(other, other_body).status_code == 201
        copies = {(n1, name): body, (n2, name): body, (n3, other): other_body}

        c.consul().kv.delete("", recurse=True)  # the whole KV is lost (the watches fire too)
        for a in c.agents:
            r = requests.post(a.url + "/_tuggle/reconcile", timeout=10)
            assert r.status_code == 200, r.text
        for (a, n), b in copies.items():
            assert a.local_file(n).read_bytes() == b, f"{a.name} deleted its copy of {n} on an empty KV"
            assert n in orphan_names(a), f"{a.name} does not report {n} as an orphan"
            assert orphans_metric(a) >= 1
        wait_until(lambda: not c.holders(name) and not c.holders(other), 10, what="orphans no longer advertised")
        assert requests.get(n1.url + "/", timeout=5).json() == []

        # Two holders adopt at once: the KV check-and-set lets exactly one publish.
        with ThreadPoolExecutor(2) as pool:
            answers = list(
                pool.map(lambda a: requests.post(f"{a.url}/_tuggle/adopt", params={"name": name}, timeout=30), (n1, n2))
            )
        assert [r.status_code for r in answers] == [200, 200], [r.text for r in answers]
        results = sorted(r.json()[name] for r in answers)
        assert results == ["already published; advertising this copy", "published again from this node's copy"], results
        assert c.consul().kv.get(f"tuggle/{name}")[1] is not None
        wait_until(lambda: c.holders(name) == {"node1", "node2"}, 10, what="both holders advertising")
        r = n3.get(name)
        assert (r.status_code, r.content == body) == (200, True), r.text[:300]
        assert c.consul().kv.get(f"tuggle.pieces/{name}/{version_of(n1, name)}")[1] is not None, (
            "the piece digests of the adopted version are missing"
        )
        assert n3.local_file(name).read_bytes() == body
        assert name not in orphan_names(n1) and name not in orphan_names(n2)
        # the other orphan was not adopted: still there, still an orphan
        assert n3.local_file(other).read_bytes() == other_body and other in orphan_names(n3)


def forged_delete(agent, name: str, version: str) -> requests.Response:
    """A DELETE user event for `name` POSTed to the node's watch endpoint, as a replayed
    or forged Consul event would arrive."""
    payload = base64.b64encode(f"DELETE:{version}:{object_id(name)}".encode()).decode()
    events = [{"ID": str(uuid.uuid4()), "Name": "tuggle", "LTime": 1, "Payload": payload}]
    return requests.post(agent.url + "/_tuggle/watch", data=json.dumps(events), timeout=10)


def test_forged_delete_event_keeps_a_copy_kv_still_holds(orphan_cluster3, unique_name):
    n1, n2, n3 = orphan_cluster3.agents
    name = unique_name()
    body = os.urandom(80_000)
    held_by_two(orphan_cluster3, name, body)
    version = version_of(n1, name)
    for a in (n1, n2):
        r = forged_delete(a, name, version)
        assert r.status_code == 200, r.text
        assert "kept" in json.dumps(r.json()), r.text
        # also with a version nobody ever deleted (no tombstone)
        assert forged_delete(a, name, uuid.uuid4().hex).status_code == 200
    for a in (n1, n2):
        assert a.local_file(name).read_bytes() == body, f"{a.name} removed its copy on a forged event"
    assert orphan_cluster3.holders(name) == {"node1", "node2"}
    assert n3.get(name).content == body
    # A genuine DELETE still removes every copy.
    assert requests.delete(f"{n3.url}/{name}", timeout=10).status_code == 200
    for a in orphan_cluster3.agents:
        wait_until(lambda: not a.local_file(name).exists(), 15, what=f"{a.name} to remove its copy")
    wait_until(lambda: not orphan_cluster3.holders(name), 10, what="no holder tag left")
    for a in orphan_cluster3.agents:
        assert name not in orphan_names(a), "a deleted object is not an orphan"
