"""Holder keys (`tuggle.holders/<name>/<version>/<node>`, consul/holders.py) as real
processes see them: a planted or malformed key, or one of another version, is never
used as a source and never crashes a node; with `holder_tags: true` the Go tuggle's
service tags are written too, and holders are found through them."""

from __future__ import annotations

import json
import os
import socket
import time

import pytest
import requests

from tuggle_agent.harness import TuggleCluster, wait_until
from tuggle_agent.objects.names import object_id

HOLDER_WAIT = 3.0


def version_of(c: TuggleCluster, name: str) -> str:
    _, entry = c.consul().kv.get(f"tuggle/{name}")
    return json.loads(entry["Value"])["version"]


def listing(agent) -> dict:
    return {o["name"]: o for o in requests.get(agent.url + "/", timeout=10).json()}


@pytest.fixture(scope="module")
def keys_cluster3(tmp_path_factory):
    with TuggleCluster(
        tmp_path_factory.mktemp("holderkeys"), nodes=3, settings={"holder_wait": f"{HOLDER_WAIT:g}s"}
    ) as c:
        yield c


@pytest.fixture
def trap():
    """A listening socket nobody should ever connect to: any connection waits in its
    accept queue, so a non-blocking accept() tells whether one was made."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        s.setblocking(False)
        yield s


def contacted(trap: socket.socket) -> bool:
    try:
        conn, _ = trap.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


def test_planted_and_malformed_holder_keys_are_never_used(keys_cluster3, unique_name, trap):
    c = keys_cluster3
    n1, n2, n3 = c.agents
    name = unique_name()
    body = os.urandom(50_000)
    assert n1.put(name, body).status_code == 201
    version = version_of(c, name)
    port = trap.getsockname()[1]
    good = json.dumps({"address": "127.0.0.1", "port": port}).encode()
    consul = c.consul("node3")
    sid = consul.session.create(name="planted", behavior="delete")
    prefix = f"tuggle.holders/{name}/{version}/"
    planted = {
        prefix + "trap-str-port": (json.dumps({"address": "127.0.0.1", "port": str(port)}).encode(), sid),
        prefix + "trap-junk": (b"\x00\xffnot json", sid),
        prefix + "trap-old-relay-format": (b"node3", sid),
        prefix + "trap/nested": (good, sid),
        prefix + "trap-unheld": (good, None),  # a plain PUT: no session stands behind it
        f"tuggle.holders/{name}/other-version/trap-other-version": (good, sid),  # another version
        f"tuggle.relay/{name}/{version}/trap-relay": (json.dumps({"address": "127.0.0.1"}).encode(), sid),
    }
    for key, (value, session) in planted.items():
        assert consul.kv.put(key, value, acquire=session) if session else consul.kv.put(key, value)

    assert listing(n2)[name]["holders"] == 1  # node1 only: planted keys are not counted
    n1.stop()  # its holder key goes with its session: only planted keys are left
    try:
        started = time.monotonic()
        r = n2.get(name)
        assert r.status_code == 503, r.text  # no holder, after holder_wait: not a trap, not a hang
        assert time.monotonic() - started < HOLDER_WAIT + 5
        assert listing(n2)[name]["holders"] == 0
        st = requests.get(f"{n2.url}/{name}?status", timeout=10).json()
        assert st["complete"] == 0 and not any(r["node"].startswith("trap") for r in st["nodes"])
    finally:
        n1.start()
    r = n3.get(name)
    assert r.status_code == 200 and r.content == body
    assert not contacted(trap), "a planted holder or relay entry was used as a source"
    assert not c.dead_agents() and "Traceback" not in c.logs()
    for key in planted:
        consul.kv.delete(key)
    consul.session.destroy(sid)


def test_a_node_that_comes_back_writes_its_keys_again(keys_cluster3, unique_name):
    """A graceful stop deletes this node's holder keys (session destroyed); the restart
    advertises the copies it kept, under a new session."""
    c = keys_cluster3
    n1, n2, _ = c.agents
    name = unique_name()
    assert n1.put(name, b"kept across a restart").status_code == 201
    assert n2.get(name).status_code == 200
    wait_until(lambda: c.holders(name) == {"node1", "node2"}, 10, what="node2 advertising")
    n2.stop()
    assert c.holders(name) == {"node1"}
    n2.start()
    assert c.holders(name) == {"node1", "node2"}  # start() waits until its keys are written
    [session] = [s for s in c.consul().session.node("node2")[1] if s["Name"].startswith("tuggle-agent holders")]
    _, entry = c.consul().kv.get(f"tuggle.holders/{name}/{version_of(c, name)}/node2")
    assert entry["Session"] == session["ID"]


def test_holder_tags_writes_the_go_tags_and_finds_holders_by_them(tmp_path, unique_name):
    with TuggleCluster(tmp_path, nodes=2, settings={"holder_tags": True, "holder_wait": "3s"}) as c:
        n1, n2 = c.agents
        name = unique_name()
        body = os.urandom(20_000)
        assert n1.put(name, body).status_code == 201
        _, services = c.consul("node1").catalog.service("tuggle")
        assert [s["ServiceTags"] for s in services if s["Node"] == "node1"] == [[object_id(name)]]
        # A Go tuggle node writes no holder key: drop node1's, so only its tag is left.
        assert c.consul().kv.delete(f"tuggle.holders/{name}/{version_of(c, name)}/node1")
        assert listing(n2)[name]["holders"] == 1
        r = n2.get(name)
        assert r.status_code == 200 and r.content == body
        wait_until(lambda: object_id(name) in c.consul("node2").agent.services()["tuggle"]["Tags"], 10, what="tag")
