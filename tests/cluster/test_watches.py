"""Consul watches drive prefetch and delete: the dev agent runs the real
`tuggle-agent handle-event` from the consul.d files install-watches wrote."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tuggle_agent.harness import TuggleCluster, agent_command, wait_until
from tuggle_agent.objects.names import object_id

MiB = 2**20
HOOK = Path(__file__).parent / "hook_scripts"


@pytest.fixture(scope="module")
def watch_cluster3(tmp_path_factory):
    """Three nodes with Consul watches (script handlers); node2 and node3 run the test hooks
    (node2 keeps a copy whose post_download hook failed, node3 discards it and fetches at
    4 MiB/s). Shared by the module's tests; hooks record into the cluster's workdir."""
    work = tmp_path_factory.mktemp("watches")
    py = sys.executable
    hooks = {
        "pre_download": [
            {"command": [py, str(HOOK / "veto.py")], "match": "veto-*", "timeout": "10s"},
            {"command": [py, str(HOOK / "flaky.py"), str(work)], "match": "flaky-*", "timeout": "10s"},
        ],
        "post_download": [
            {"command": [py, str(HOOK / "record_env.py"), str(work / "hook-env.jsonl")], "timeout": "10s"},
            {"command": [py, str(HOOK / "fail.py")], "match": "postfail-*", "timeout": "10s"},
        ],
        "post_delete": [
            {"command": [py, str(HOOK / "record_env.py"), str(work / "hook-delete.jsonl")], "timeout": "10s"}
        ],
    }
    with TuggleCluster(
        work,
        nodes=3,
        watches=True,
        per_node={
            "node2": {"hooks": hooks, "post_download_failure": "keep"},
            "node3": {"fetch_rate": "4MiB", "hooks": hooks, "post_download_failure": "discard"},
        },
    ) as c:
        yield c


def holds(agent, name, body):
    p = agent.local_file(name)
    return p.exists() and p.read_bytes() == body


def test_sync_reaches_every_node_without_a_get(watch_cluster3, unique_name):
    name = unique_name()
    body = os.urandom(200_000)
    assert watch_cluster3[0].put(name + "?sync", body).status_code == 201
    for a in watch_cluster3.agents:
        wait_until(lambda: holds(a, name, body), 20, what=f"{a.name} to prefetch")
    wait_until(lambda: watch_cluster3.holders(name) == {"node1", "node2", "node3"}, what="all nodes tagged")


def test_node_down_during_sync_catches_up_after_restart(watch_cluster3, unique_name):
    n3 = watch_cluster3[2]
    name = unique_name()
    body = os.urandom(100_000)
    n3.stop()
    watch_cluster3.dev.stop_node("node3")
    try:
        assert watch_cluster3[0].put(name + "?sync", body).status_code == 201
        wait_until(lambda: holds(watch_cluster3[1], name, body), 20, what="node2 to prefetch")
        assert not n3.local_file(name).exists()
    finally:
        watch_cluster3.dev.restart_node("node3")
        n3.start()
    wait_until(lambda: holds(n3, name, body), 20, what="node3 to catch up after restart")


def test_node_down_during_delete_deletes_on_restart(watch_cluster3, unique_name):
    n1, _, n3 = watch_cluster3.agents
    name = unique_name()
    body = os.urandom(100_000)
    n1.put(name + "?sync", body)
    wait_until(lambda: holds(n3, name, body), 20, what="node3 to prefetch")
    n3.stop()
    watch_cluster3.dev.stop_node("node3")
    try:
        assert requests.delete(f"{n1.url}/{name}").status_code == 200
    finally:
        watch_cluster3.dev.restart_node("node3")
        n3.start(wait=False)
    # from its first answer on, node3 never serves the old bytes
    wait_until(lambda: requests.get(n3.url + "/?ping", timeout=1).ok, 20, what="node3 up")
    assert n3.get(name).status_code == 404
    n3.wait_ready()
    wait_until(lambda: not n3.local_file(name).exists(), 10, what="node3 to drop the deleted object")
    assert "node3" not in watch_cluster3.holders(name)


def test_delete_then_immediate_put_ends_with_new_content_everywhere(watch_cluster3, unique_name):
    n1, n2, _ = watch_cluster3.agents
    name = unique_name()
    old, new = os.urandom(150_000), os.urandom(150_000)
    n1.put(name + "?sync", old)
    for a in watch_cluster3.agents:
        wait_until(lambda: holds(a, name, old), 20, what=f"{a.name} old copy")
    assert requests.delete(f"{n2.url}/{name}").status_code == 200
    assert n1.put(name + "?sync", new).status_code == 201
    for a in watch_cluster3.agents:
        wait_until(lambda: holds(a, name, new), 20, what=f"{a.name} new copy")
        assert a.get(name).content == new
    # and it stays that way once every queued handler has run (a later event is handled after)
    marker = unique_name()
    n1.put(marker + "?sync", b"m")
    for a in watch_cluster3.agents:
        wait_until(lambda: holds(a, marker, b"m"), 20, what="marker")
        assert holds(a, name, new), f"{a.name} lost the new copy"


def test_event_redelivered_after_reload_acts_once(watch_cluster3, unique_name):
    n2 = watch_cluster3[1]
    name = unique_name()
    body = os.urandom(50_000)
    watch_cluster3[0].put(name + "?sync", body)
    wait_until(
        lambda: f"prefetch of {name}" in n2.log() and "acting on FETCH" in n2.log(),
        20,
        what="node2 to act on the FETCH event",
    )
    before = n2.log().count("acting on FETCH")
    skipped_before = n2.log().count("skipping FETCH")
    watch_cluster3.dev.reload("node2")
    wait_until(
        lambda: n2.log().count("skipping FETCH") > skipped_before,
        20,
        what="the replayed event buffer to reach the node",
    )
    assert n2.log().count("acting on FETCH") == before


def test_filtered_sync_reaches_only_matching_nodes(watch_cluster3, unique_name):
    n1, n2, n3 = watch_cluster3.agents
    name = unique_name()
    body = os.urandom(30_000)
    assert n1.put(name + "?sync&node=node[12]$", body).status_code == 201
    wait_until(lambda: holds(n2, name, body), 20, what="node2 to prefetch")
    marker = unique_name()
    n1.put(marker + "?sync", b"m")
    wait_until(lambda: holds(n3, marker, b"m"), 20, what="node3 to handle a later sync")
    assert not n3.local_file(name).exists(), "node3 does not match node=node[12]$"
    # durable too: a reconcile (any KV change, or restart) applies the same filter -- it
    # starts no prefetch of it (checked in its answer: a fetch would land only later)
    r = requests.post(n3.url + "/_tuggle/reconcile").json()
    assert name not in r["prefetching"]
    assert not n3.fetching(name) and not n3.local_file(name).exists()


def test_slow_prefetch_does_not_delay_a_delete(watch_cluster3, unique_name):
    n1, _, n3 = watch_cluster3.agents
    name = unique_name()
    n1.put(name + "?sync", os.urandom(24 * MiB))  # 6 s at node3's 4 MiB/s
    wait_until(
        lambda: any(
            f["name"] == name and f["verified"] > 0 for f in requests.get(n3.url + "/_tuggle/status").json()["fetching"]
        ),
        20,
        what="node3 fetching",
    )
    t0 = time.monotonic()
    assert requests.delete(f"{n1.url}/{name}").status_code == 200
    wait_until(
        lambda: not any(f["name"] == name for f in requests.get(n3.url + "/_tuggle/status").json()["fetching"]),
        5,
        what="node3 to abandon the fetch",
    )
    assert time.monotonic() - t0 < 3.0
    assert not n3.local_file(name).exists()
    assert list((n3.data_dir / ".tmp").glob(f"*{object_id(name)}*")) == []  # temp files are named by id


def test_hooks_get_the_documented_environment(watch_cluster3, unique_name):
    name = unique_name()
    body = b"hooked"
    watch_cluster3[0].put(name, body, headers={"Content-Type": "text/plain"})
    assert watch_cluster3[1].get(name).content == body
    records = wait_until(
        lambda: [
            r
            for r in map(json.loads, (watch_cluster3.workdir / "hook-env.jsonl").read_text().splitlines())
            if r["TUGGLE_NAME"] == name
        ],
        10,
        what="post_download hook",
    )
    env = records[0]
    assert env["TUGGLE_PATH"] == str(watch_cluster3[1].local_file(name))
    assert env["TUGGLE_SIZE"] == "6" and env["TUGGLE_CONTENT_TYPE"] == "text/plain"
    assert env["TUGGLE_SOURCE_NODE"] == "node1" and env["TUGGLE_NODE"] == "node2"
    assert len(env["TUGGLE_ID"]) == 32 and len(env["TUGGLE_SHA256"]) == 64
    requests.delete(f"{watch_cluster3[0].url}/{name}")
    wait_until(
        lambda: any(
            json.loads(line)["TUGGLE_NAME"] == name
            for line in (watch_cluster3.workdir / "hook-delete.jsonl").read_text().splitlines()
        ),
        10,
        what="post_delete hook on node2",
    )


def test_vetoing_pre_hook_blocks_the_download(watch_cluster3, unique_name):
    name = "veto-" + unique_name()
    watch_cluster3[0].put(name, b"not wanted")
    r = watch_cluster3[1].get(name)
    assert r.status_code == 503 and "pre_download" in r.text and "disk is full (test veto)" in r.text
    assert not watch_cluster3[1].local_file(name).exists()


def test_failing_post_hook_follows_policy(watch_cluster3, unique_name):
    name = "postfail-" + unique_name()
    watch_cluster3[0].put(name, b"payload")
    assert watch_cluster3[1].get(name).content == b"payload"  # keep
    assert watch_cluster3[2].get(name).content == b"payload"  # discard: the client still got its bytes
    status2 = wait_until(
        lambda: [
            o
            for o in requests.get(watch_cluster3[1].url + "/_tuggle/status").json()["objects"]
            if o["name"] == name and o["status"].get("post_download")
        ],
        10,
        what="status",
    )
    assert (
        status2[0]["status"]["post_download"] == "failed" and "exited 3" in status2[0]["status"]["post_download_error"]
    )
    wait_until(lambda: not watch_cluster3[2].local_file(name).exists(), 10, what="node3 to discard")
    wait_until(lambda: watch_cluster3.holders(name) == {"node1", "node2"}, 10, what="node3 not advertising")


@pytest.mark.parametrize("stdin", ["not json", '{"Key": "x"}', "[1, 2]", '[{"foo": 1}]'])
def test_malformed_stdin_is_refused_and_changes_nothing(watch_cluster3, stdin):
    before = sorted(p.name for p in watch_cluster3[0].data_dir.iterdir())
    p = subprocess.run(
        agent_command("handle-event", "--config", str(watch_cluster3[0].config_path)),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert p.returncode != 0
    assert "not a Consul watch result" in p.stderr and "Nothing was changed" in p.stderr
    assert sorted(p.name for p in watch_cluster3[0].data_dir.iterdir()) == before


def test_http_watch_handlers_sync_and_delete_without_a_process(tmp_path, unique_name):
    with TuggleCluster(tmp_path, nodes=3, watches="http") as c:
        cfg = json.loads((c[1].dir / "consul.d" / "tuggle-agent-watches.json").read_text())
        assert {w["handler_type"] for w in cfg["watches"]} == {"http"}
        name = unique_name()
        body = os.urandom(100_000)
        assert c[0].put(name + "?sync", body).status_code == 201
        for a in c.agents:
            wait_until(lambda: holds(a, name, body), 20, what=f"{a.name} to prefetch")
        assert requests.delete(f"{c[2].url}/{name}").status_code == 200
        for a in c.agents:
            wait_until(lambda: not a.local_file(name).exists(), 20, what=f"{a.name} to delete")
        assert not (c[1].data_dir / ".tuggle" / "handle-event.log").exists(), "no handler process ran"


def test_post_sync_resyncs_an_existing_object(watch_cluster3, unique_name):
    name = unique_name()
    body = os.urandom(40_000)
    watch_cluster3[0].put(name, body)
    assert not watch_cluster3[2].local_file(name).exists()
    r = requests.post(f"{watch_cluster3[0].url}/{name}?sync")
    assert r.status_code == 202
    for a in watch_cluster3.agents:
        wait_until(lambda: holds(a, name, body), 20, what=f"{a.name} to prefetch after POST ?sync")
    assert requests.post(f"{watch_cluster3[0].url}/no-such-object?sync").status_code == 404
    assert requests.post(f"{watch_cluster3[0].url}/{name}?sync&tag=x").status_code == 400


def test_sync_filters_are_checked_like_consul_checks_them(watch_cluster3, unique_name):
    n1 = watch_cluster3[0]
    name = unique_name()
    assert n1.put(name + "?sync&tag=x", b"x").status_code == 400
    assert n1.put(name + "?sync&node=(unclosed", b"x").status_code == 400
    assert n1.get(name).status_code == 404, "a refused sync stores nothing"


def test_a_failed_sync_prefetch_is_retried_without_any_new_change(watch_cluster3, unique_name):
    name = "flaky-" + unique_name()
    body = os.urandom(20_000)
    assert watch_cluster3[0].put(name + "?sync", body).status_code == 201
    wait_until(lambda: holds(watch_cluster3[1], name, body), 30, what="node2 to retry and prefetch")
    assert "will retry the sync of " + name in watch_cluster3[1].log()
