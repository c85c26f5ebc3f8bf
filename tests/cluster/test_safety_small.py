"""Issue 8 §6/§7: smaller items -- long names, a DELETE while a post_download hook runs,
a version replaced while a node was down, the max_upload_size boundary, a PUT ?sync
whose event cannot be fired, and a SIGTERM that lands while reconciles run."""

import contextlib
import os
import sys
import threading
import time

import pytest
import requests

import tuggle_agent.harness.cluster as harness_cluster
from tuggle_agent.devconsul import DevCluster, Timings
from tuggle_agent.harness import TuggleCluster, wait_until

LIMIT = 100_000  # node3's max_upload_size

SLOW_HOOK = """\
import os, sys, time
marks = sys.argv[1]
name = os.environ["TUGGLE_NAME"]
open(os.path.join(marks, name + ".started"), "w").close()
time.sleep(3)
open(os.path.join(marks, name + ".done"), "w").close()
"""


@pytest.fixture(scope="module")
def small_cluster3(tmp_path_factory):
    """Three nodes with http watches; node2 runs a 3 s post_download hook on names
    `slowhook-*`; node3 accepts uploads of at most LIMIT bytes."""
    work = tmp_path_factory.mktemp("small")
    (work / "marks").mkdir()
    (work / "slow_hook.py").write_text(SLOW_HOOK)
    hooks = {
        "post_download": [
            {
                "command": [sys.executable, str(work / "slow_hook.py"), str(work / "marks")],
                "match": "slowhook-*",
                "timeout": "30s",
            }
        ]
    }
    with TuggleCluster(
        work,
        nodes=3,
        watches="http",
        settings={"holder_wait": "3s"},
        per_node={"node2": {"hooks": hooks}, "node3": {"max_upload_size": LIMIT}},
    ) as c:
        yield c


def test_names_of_250_characters_round_trip(small_cluster3):
    n1, n2, _ = small_cluster3.agents
    for length in (250, 255):
        name = f"n{length}-" + "x" * (length - len(f"n{length}-") - 4) + ".bin"
        assert len(name) == length
        body = os.urandom(70_000)
        r = n1.put(name, body)
        assert r.status_code == 201, (length, r.status_code, r.text)
        r = n2.get(name)
        assert r.status_code == 200 and r.content == body, (length, r.status_code)
        assert n2.local_file(name).read_bytes() == body
        assert requests.delete(f"{n1.url}/{name}").status_code == 200


def test_delete_during_post_download_hook_leaves_no_holder_tag(small_cluster3, unique_name):
    n1, n2, _ = small_cluster3.agents
    marks = small_cluster3.workdir / "marks"
    name = "slowhook-" + unique_name()
    body = os.urandom(100_000)
    assert n1.put(name, body).status_code == 201
    assert n2.get(name).content == body  # the client has its bytes; the hook now runs 3 s
    wait_until(lambda: (marks / f"{name}.started").exists(), 10, what="node2's post_download hook to start")
    assert not (marks / f"{name}.done").exists()
    assert requests.delete(f"{n1.url}/{name}").status_code == 200
    wait_until(lambda: (marks / f"{name}.done").exists(), 10, what="the hook to end")
    wait_until(lambda: not n2.fetching(name), 10, what="node2's fetch job to end")
    assert "node2" not in small_cluster3.holders(name), "node2 re-advertised a deleted object after its hook"
    assert not n2.local_file(name).exists()
    # and it stays so once node2 reconciles again
    assert requests.post(n2.url + "/_tuggle/reconcile", timeout=10).ok
    assert "node2" not in small_cluster3.holders(name)
    assert not small_cluster3.holders(name)


def test_version_replaced_while_a_node_was_down_is_dropped_on_restart(small_cluster3, unique_name):
    n1, n2, _ = small_cluster3.agents
    name = unique_name()
    old, new = os.urandom(60_000), os.urandom(60_000)
    assert n1.put(name, old).status_code == 201
    assert n2.get(name).content == old
    wait_until(lambda: small_cluster3.holders(name) == {"node1", "node2"}, 10, what="node2 tagged")
    n2.stop()
    try:
        assert requests.delete(f"{n1.url}/{name}").status_code == 200
        assert n1.put(name, new).status_code == 201
    finally:
        n2.start()
    # the restart's reconcile removed the old copy before any GET
    assert not n2.local_file(name).exists(), "node2 kept the replaced version"
    status = requests.get(n2.url + "/_tuggle/status").json()
    assert name not in {o["name"] for o in status["orphans"]}
    assert "node2" not in small_cluster3.holders(name)
    r = n2.get(name)
    assert r.status_code == 200 and r.content == new
    assert n2.local_file(name).read_bytes() == new


def test_body_of_exactly_max_upload_size_is_accepted(small_cluster3, unique_name):
    n3 = small_cluster3[2]
    exact, over = unique_name(), unique_name()
    r = n3.put(exact, os.urandom(LIMIT))
    assert r.status_code == 201, (r.status_code, r.text)
    r = n3.put(over, os.urandom(LIMIT + 1))
    assert r.status_code == 413, (r.status_code, r.text)
    assert n3.get(over).status_code == 404
    assert small_cluster3[0].get(exact).status_code == 200


def test_chunked_body_of_exactly_max_upload_size_is_accepted(small_cluster3, unique_name):
    """The same without a Content-Length (chunked): the limit counts body bytes, not the
    chunk framing."""
    n3 = small_cluster3[2]
    exact, over = unique_name(), unique_name()
    data = os.urandom(LIMIT + 1)
    r = n3.put(exact, iter([data[: LIMIT // 2], data[LIMIT // 2 : LIMIT]]))
    assert r.status_code == 201, (r.status_code, r.text)
    r = n3.put(over, iter([data[: LIMIT // 2], data[LIMIT // 2 :]]))
    assert r.status_code == 413, (r.status_code, r.text)
    assert n3.get(over).status_code == 404
    assert n3.get(exact).content == data[:LIMIT]


def test_sigterm_during_reconciles_leaves_no_registration(small_cluster3):
    """A reconcile running while the node shuts down must not register the service again
    after close() deregistered it (a stopped node would stay listed, with its tags)."""
    n3 = small_cluster3[2]
    stop = threading.Event()

    def hammer():
        while not stop.is_set():
            with contextlib.suppress(requests.RequestException):
                requests.post(n3.url + "/_tuggle/reconcile", timeout=2)

    threads = [threading.Thread(target=hammer, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)  # reconciles in flight
        n3.stop()
    finally:
        stop.set()
        for t in threads:
            t.join(5)
    try:
        services = small_cluster3.consul("node3").agent.services()
        assert "tuggle" not in services, "the stopped node3 is still registered: " + n3.log_tail()[-1500:]
    finally:
        n3.start()


MASTER = "5b6c2f0e-7d1a-4e3b-9c8d-0a1b2c3d4e5f"


def test_put_sync_answers_201_when_the_event_cannot_be_fired(tmp_path, unique_name, monkeypatch):
    """Under ACLs, a token that may write KV, services and sessions but not fire events:
    the object is stored and marked for sync in KV (durable), so the PUT is a 201."""
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", MASTER)  # the harness's own py-consul clients
    plain_env = harness_cluster.agent_env
    monkeypatch.setattr(
        harness_cluster, "agent_env", lambda: {k: v for k, v in plain_env().items() if k != "CONSUL_HTTP_TOKEN"}
    )
    token_file = tmp_path / "consul-token"
    token_file.write_text(MASTER)
    c = TuggleCluster(tmp_path / "c", nodes=1, settings={"consul.token_file": str(token_file)})
    c.dev = DevCluster(
        nodes=1, timings=Timings.fast(), acl=True, acl_master_token=MASTER, env={"PATH": plain_env()["PATH"]}
    )
    with c:
        n1 = c[0]
        master = c.dev.consul("node1", token=MASTER)
        policy = master.acl.policy.create(
            "tuggle-no-events",
            rules={
                "key_prefix": {"tuggle": {"policy": "write"}},
                "service": {"tuggle": {"policy": "write"}},
                "session": {"node1": {"policy": "write"}},
                "node_prefix": {"": {"policy": "read"}},
                "agent_prefix": {"": {"policy": "read"}},
                "event_prefix": {"": {"policy": "deny"}},
            },
        )
        token = master.acl.token.create(policies_id=[policy["ID"]], description="no events")["SecretID"]
        token_file.write_text(token)
        n1.restart()
        name = unique_name()
        r = n1.put(name + "?sync", b"synced without an event")
        assert r.status_code == 201, (r.status_code, r.text)
        assert f"FETCH event for {name} not sent" in n1.log(), "the event fire did not fail: the test proves nothing"
        listed = [o for o in requests.get(n1.url + "/").json() if o["name"] == name]
        assert listed and listed[0]["sync"] is not None, "the sync request is not in KV"
        assert n1.get(name).content == b"synced without an event"
