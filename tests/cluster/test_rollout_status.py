"""`GET /<name>?status` and the holder counts of `GET /` on a real cluster: a `?sync`
rolling out to a slow node, a failing post_download hook, a node filter, a stopped node."""

import os
import signal
import sys

import pytest
import requests

from tuggle_agent.harness import TuggleCluster, wait_until

MiB = 2**20


@pytest.fixture(scope="module")
def status_cluster3(tmp_path_factory):
    """Three nodes with Consul watches (http handlers); node3 fetches at 1 MiB/s; node2's
    post_download hook fails (exit 3) for names starting with hookfail-."""
    fail = {"command": [sys.executable, "-c", "import sys; sys.exit(3)"], "match": "hookfail-*", "timeout": "10s"}
    with TuggleCluster(
        tmp_path_factory.mktemp("rollout"),
        nodes=3,
        watches="http",
        per_node={
            "node2": {"hooks": {"post_download": [fail]}, "post_download_failure": "keep"},
            "node3": {"fetch_rate": "1MiB"},
        },
    ) as c:
        yield c


def status(agent, name) -> dict:
    r = requests.get(f"{agent.url}/{name}?status", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def row(st: dict, node: str) -> dict:
    return next(r for r in st["nodes"] if r["node"] == node)


def listing(agent) -> dict:
    return {o["name"]: o for o in requests.get(agent.url + "/", timeout=10).json()}


def test_sync_shows_the_slow_node_fetching_then_every_target_complete(status_cluster3, unique_name):
    n1 = status_cluster3[0]
    name = unique_name()
    body = os.urandom(6 * MiB)
    assert n1.put(name + "?sync", body).status_code == 201
    seen: list[dict] = []

    def node3_fetching() -> bool:
        r = row(status(n1, name), "node3")
        if r["state"] == "fetching" and r["bytes_verified"] > 0 and r["rate"] > 0:
            seen.append(r)
        return len(seen) >= 2 and seen[-1]["bytes_verified"] > seen[0]["bytes_verified"]

    wait_until(node3_fetching, 20, interval=0.3, what=f"node3 fetching with growing bytes: {seen}")
    assert seen[-1]["source"] in ("node1", "node2") and seen[-1]["passing"] is True
    assert seen[-1]["bytes_verified"] < len(body)
    assert 0.3 * MiB < seen[-1]["rate"] < 3 * MiB  # fetch_rate 1MiB, a burst at the start
    mid = status(n1, name)
    assert mid["complete"] < 3 and mid["targets"] == ["node1", "node2", "node3"]

    wait_until(lambda: status(n1, name)["complete_targets"] == 3, 30, what="every target complete")
    st = status(status_cluster3[1], name)  # any node answers the same
    assert [(r["node"], r["state"], r["bytes_verified"]) for r in st["nodes"]] == [
        (n, "complete", len(body)) for n in ("node1", "node2", "node3")
    ]
    assert st["complete"] == 3 and st["failed"] == [] and st["sync"] == {"node": "", "service": "", "tag": ""}
    assert (st["name"], st["size"]) == (name, len(body)) and len(st["sha256"]) == 64 and st["version"]
    assert listing(n1)[name]["holders"] == 3 and listing(n1)[name]["no_passing_holder"] is False


def test_failed_post_download_hook_is_reported_and_deleted_with_the_object(status_cluster3, unique_name):
    n1 = status_cluster3[0]
    name = "hookfail-" + unique_name()
    assert n1.put(name + "?sync", os.urandom(100_000)).status_code == 201
    wait_until(lambda: status(n1, name)["failed"] == ["node2"], 20, what="node2's hook failure in ?status")
    wait_until(lambda: status(n1, name)["complete"] == 2, 20, what="node1 and node3 complete")
    st = status(n1, name)
    r = row(st, "node2")
    assert r["state"] == "hook_failed" and r["passing"] is True and "3" in r["detail"], r
    assert row(st, "node3")["state"] == "complete" and st["complete_targets"] == 2
    consul = status_cluster3.consul()
    _, keys = consul.kv.get(f"tuggle.status/{name}/", keys=True)
    assert keys == [f"tuggle.status/{name}/{st['version']}/node2"]
    assert requests.delete(f"{n1.url}/{name}", timeout=10).status_code == 200
    assert consul.kv.get(f"tuggle.status/{name}/", keys=True)[1] is None
    assert requests.get(f"{n1.url}/{name}?status", timeout=10).status_code == 404


def test_node_filter_targets_only_matching_nodes(status_cluster3, unique_name):
    n1 = status_cluster3[0]
    name = unique_name()
    assert n1.put(name + "?sync&node=node[12]$", os.urandom(50_000)).status_code == 201
    wait_until(lambda: status(n1, name)["complete_targets"] == 2, 20, what="node1 and node2 complete")
    st = status(status_cluster3[2], name)
    assert st["targets"] == ["node1", "node2"] and st["sync"]["node"] == "node[12]$"
    assert st["complete"] == 2
    r = row(st, "node3")
    assert r["state"] == "missing" and r["detail"] == "not targeted by the sync filters"


def test_stopped_node_is_down_and_its_only_copy_has_no_passing_holder(status_cluster3, unique_name):
    n1, n3 = status_cluster3[0], status_cluster3[2]
    name = unique_name()
    assert n3.put(name, os.urandom(10_000)).status_code == 201
    wait_until(lambda: listing(n1)[name]["holders"] == 1, 10, what="node3 counted as holder")
    assert listing(n1)[name]["no_passing_holder"] is False
    n3.stop()
    try:
        entry = listing(n1)[name]
        assert entry["holders"] == 0 and entry["no_passing_holder"] is True
        assert list(entry)[-2:] == ["holders", "no_passing_holder"]
        st = status(n1, name)
        r = row(st, "node3")
        assert r["state"] == "down" and r["passing"] is False and r["detail"], r
        assert st["complete"] == 0 and st["targets"] == ["node1", "node2", "node3"]
        assert row(st, "node2")["state"] == "missing"
    finally:
        n3.start()
    wait_until(lambda: row(status(n1, name), "node3")["state"] == "complete", 20, what="node3 complete again")


def test_hung_node_with_a_critical_check_is_down_and_not_counted(status_cluster3, unique_name):
    """Still registered, but its check is critical: Consul ends its holder session, so
    its holder keys go and it is no longer a holder; once it recovers it is one again."""
    n1, n3 = status_cluster3[0], status_cluster3[2]
    name = unique_name()
    assert n3.put(name, os.urandom(10_000)).status_code == 201
    wait_until(lambda: listing(n1)[name]["holders"] == 1, 10, what="node3 counted as holder")
    assert n3.proc is not None
    os.killpg(n3.proc.pid, signal.SIGSTOP)
    try:
        wait_until(lambda: not status_cluster3.passing("node3"), 15, what="node3's check to turn critical")
        assert status_cluster3.holders(name) == set()  # its holder key went with its session
        entry = listing(n1)[name]
        assert entry["holders"] == 0 and entry["no_passing_holder"] is True
        r = row(status(n1, name), "node3")
        assert r["state"] == "down" and r["passing"] is False and "critical" in r["detail"], r
    finally:
        os.killpg(n3.proc.pid, signal.SIGCONT)
    wait_until(lambda: listing(n1)[name]["holders"] == 1, 15, what="node3 passing again")
    assert status_cluster3.holders(name) == {"node3"}  # a new session wrote its key again
    assert n1.get(name).status_code == 200
