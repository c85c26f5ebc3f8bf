"""The HTTP API on a real 3-node cluster: the Go tuggle's README scenario and its edges."""

import http.client
import json
import os
import socket
import time

import requests

from tuggle_agent.harness import TuggleCluster, wait_until
from tuggle_agent.objects.names import object_id


def test_readme_scenario(cluster3, unique_name):
    n1, n2, n3 = cluster3.agents
    name = unique_name("tar.gz")
    body = os.urandom(300_000)
    r = n1.put(name, body, headers={"Content-Type": "application/gzip"})
    assert r.status_code == 201, r.text

    listing = requests.get(n1.url + "/").json()
    entry = next(o for o in listing if o["name"] == name)
    assert entry["id"] == object_id(name) and entry["size"] == len(body)
    assert entry["content_type"] == "application/gzip" and entry["created_at"] and len(entry["sha256"]) == 64

    h = requests.head(f"{n2.url}/{name}")
    assert h.status_code == 200
    assert h.headers["Content-Length"] == str(len(body))
    assert h.headers["X-Tuggle-Object-Id"] == object_id(name)
    assert h.headers["Content-Type"] == "application/gzip" and h.headers["Last-Modified"]
    assert not n2.local_file(name).exists(), "HEAD must be answered from metadata, without fetching"

    g = n2.get(name)
    assert g.status_code == 200 and g.content == body
    assert g.headers["ETag"].strip('"') == entry["sha256"]
    assert n2.local_file(name).read_bytes() == body
    wait_until(lambda: cluster3.holders(name) == {"node1", "node2"}, what="node1 and node2 tagged as holders")

    d = requests.delete(f"{n3.url}/{name}")
    assert d.status_code == 200
    for a in cluster3.agents:
        assert a.get(name).status_code == 404
        assert requests.head(f"{a.url}/{name}").status_code == 404
    assert name not in [o["name"] for o in requests.get(n1.url + "/").json()]
    assert requests.delete(f"{n3.url}/{name}").status_code == 404


def test_put_existing_name_is_409_and_changes_nothing(cluster3, unique_name):
    n1, n2, _ = cluster3.agents
    name = unique_name()
    assert n1.put(name, b"first").status_code == 201
    r = n2.put(name, b"second")
    assert r.status_code == 409 and "exists" in r.text
    assert n1.get(name).content == b"first"
    assert n2.get(name).content == b"first"


def test_bad_names_and_traversal_are_refused_with_nothing_written(cluster3):
    n1 = cluster3.agents[0]
    before = sorted(p for p in n1.dir.rglob("*"))
    for raw in ["/..%2F..%2Fetc%2Fpasswd", "/.hidden", "/a%2Fb", "/-dash", "/" + "x" * 256, "/%00nul", "/sp%20ace"]:
        r = requests.put(n1.url + raw, data=b"evil")
        assert r.status_code in (400, 404), (raw, r.status_code)
        if r.status_code == 400:
            assert "must match" in r.text
        assert requests.get(n1.url + raw).status_code in (400, 404)
    assert sorted(p for p in n1.dir.rglob("*") if "agent.log" not in str(p)) == [
        p for p in before if "agent.log" not in str(p)
    ]
    assert not (n1.dir.parent / "evil").exists()


def test_truncated_upload_leaves_no_object_file_or_tag(cluster3, unique_name):
    n1 = cluster3.agents[0]
    name = unique_name()
    with socket.create_connection(("127.0.0.1", n1.port)) as s:
        s.sendall(f"PUT /{name} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n".encode() + b"x" * 400_000)
    # the server sees the disconnect; nothing may appear, now or later
    assert n1.get(name).status_code == 404
    assert requests.put(f"{n1.url}/{name}", data=b"ok").status_code == 201, "the name must still be free"
    assert n1.local_file(name).read_bytes() == b"ok"
    assert list((n1.data_dir / ".tmp").iterdir()) == []


def test_range_on_held_and_fetched_objects(cluster3, unique_name):
    n1, n2, _ = cluster3.agents
    name = unique_name()
    body = os.urandom(1_000_000)
    n1.put(name, body)
    r = n1.get(name, headers={"Range": "bytes=100-199"})
    assert r.status_code == 206 and r.content == body[100:200]
    assert r.headers["Content-Range"] == f"bytes 100-199/{len(body)}"
    r = n2.get(name, headers={"Range": "bytes=-10"})  # a miss: fetched, range honoured while streaming
    assert r.status_code == 206 and r.content == body[-10:]
    assert r.headers["Content-Range"] == f"bytes {len(body) - 10}-{len(body) - 1}/{len(body)}"
    # what a peer gets from a complete holder when it resumes
    r = requests.get(f"{n1.url}/{name}", headers={"X-Tuggle-Internal": "test", "Range": "bytes=300-"}, timeout=10)
    assert r.status_code == 206 and r.content == body[300:]
    assert r.headers["Content-Range"] == f"bytes 300-{len(body) - 1}/{len(body)}"
    wait_until(lambda: n2.local_file(name).exists(), what="node2 to finish its fetch")
    r = n2.get(name, headers={"Range": "bytes=500000-"})
    assert r.status_code == 206 and r.content == body[500000:]
    assert n2.get(name, headers={"Range": "bytes=2000000-"}).status_code == 416


def test_conditional_get(cluster3, unique_name):
    n1 = cluster3.agents[0]
    name = unique_name()
    n1.put(name, b"hello")
    etag = n1.get(name).headers["ETag"]
    assert n1.get(name, headers={"If-None-Match": etag}).status_code == 304


def test_graph_dot_and_svg(cluster3, unique_name):
    n1, n2, n3 = cluster3.agents
    name = unique_name()
    n1.put(name, os.urandom(10_000))
    assert n2.get(name).status_code == 200
    assert n3.get(name).status_code == 200
    dot = wait_until(lambda: (t := n1.get(name + "?graph").text).count("->") == 2 and t, what="two graph edges")
    assert dot.startswith(f'digraph "{name}"')
    assert '-> "node2"' in dot and '-> "node3"' in dot and "s\\n" in dot
    svg = n1.get(name + "?graph&format=svg")
    assert svg.status_code == 200 and svg.headers["Content-Type"].startswith("image/svg+xml")
    assert b"<svg" in svg.content and b"node3" in svg.content
    png = n1.get(name + "?graph&format=png")
    assert png.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert n1.get(name + "?graph&format=gif").status_code == 400
    assert n1.get("missing-object?graph").status_code == 404


def test_ping_and_listing_shapes(cluster3):
    n1 = cluster3.agents[0]
    assert requests.get(n1.url + "/?ping").status_code == 200
    assert isinstance(json.loads(requests.get(n1.url + "/").text), list)
    assert requests.get(n1.url + "/no-such-object").status_code == 404


def test_fifty_stalled_downloads_do_not_block_ping(cluster3, unique_name):
    n1 = cluster3.agents[0]
    name = unique_name()
    n1.put(name, os.urandom(40 * 2**20))
    stalled = [requests.get(f"{n1.url}/{name}", stream=True, timeout=30) for _ in range(50)]
    try:
        assert all(r.status_code == 200 for r in stalled)
        t0 = time.monotonic()
        assert requests.get(n1.url + "/?ping", timeout=5).status_code == 200
        assert time.monotonic() - t0 < 1.0
        assert cluster3.passing("node1")
    finally:
        for r in stalled:
            r.close()


def test_consul_down_gives_a_clear_503_and_recovers(cluster3, unique_name):
    n1 = cluster3.agents[0]
    name = unique_name()
    n1.put(name, b"before")
    cluster3.dev.stop_node("node1")
    try:
        r = n1.get(name)
        assert r.status_code == 503
        assert "Consul" in r.text and str(cluster3.dev.node("node1").port) in r.text
        r = requests.put(f"{n1.url}/{unique_name()}", data=b"x")
        assert r.status_code == 503
    finally:
        cluster3.dev.restart_node("node1")
    # the restarted agent forgot our service; the first watch-free reconcile restores it
    requests.post(n1.url + "/_tuggle/reconcile")
    wait_until(lambda: cluster3.passing("node1"), 15, what="node1 registered and passing again")
    assert n1.get(name).content == b"before"
    # its holder session went with the forgotten check: a new one rewrites its key
    wait_until(lambda: "node1" in cluster3.holders(name), 15, what="node1's holder key written again")


def test_max_upload_size_is_enforced(tmp_path, unique_name):
    with TuggleCluster(tmp_path, nodes=1, settings={"max_upload_size": "1MB"}) as c:
        name = unique_name()
        r = c[0].put(name, os.urandom(2_000_000))
        assert r.status_code == 413
        assert c[0].get(name).status_code == 404
        assert c[0].put(name, os.urandom(900_000)).status_code == 201


def test_writes_from_outside_write_allow_are_refused(tmp_path, unique_name):
    with TuggleCluster(tmp_path, nodes=1, settings={"write_allow": ["127.0.0.1/32"]}) as c:
        name = unique_name()
        for method in ("PUT", "DELETE"):
            conn = http.client.HTTPConnection("127.0.0.1", c[0].port, timeout=10, source_address=("127.0.0.2", 0))
            conn.request(method, f"/{name}", body=b"x" if method == "PUT" else None)
            r = conn.getresponse()
            body = r.read().decode()
            assert r.status == 403 and "write_allow" in body, (method, r.status, body)
            conn.close()
        assert c[0].get(name).status_code == 404
        assert c[0].put(name, b"from loopback").status_code == 201
        conn = http.client.HTTPConnection("127.0.0.1", c[0].port, timeout=10, source_address=("127.0.0.2", 0))
        conn.request("GET", f"/{name}")
        assert conn.getresponse().read() == b"from loopback", "reads stay open"


def test_peer_requests_never_start_a_fetch(cluster3, unique_name):
    n1, n2, _ = cluster3.agents
    name = unique_name()
    n1.put(name, b"only on node1")
    r = n2.get(name, headers={"X-Tuggle-Internal": "node9"})
    assert r.status_code == 404
    assert not n2.local_file(name).exists() and n2.fetching(name) == []


def test_planted_graph_edges_never_break_graph(cluster3, unique_name):
    n1, n2, _ = cluster3.agents
    name = unique_name()
    n1.put(name, b"graph me")
    assert n2.get(name).status_code == 200
    c = cluster3.consul()
    planted = {
        "not-json": b"{",
        "list": b"[1, 2]",
        "missing": b'{"from": "x"}',
        "nan": b'{"from": "a", "to": "b", "start": NaN, "end": 1, "elapsed": 1}',
        "types": b'{"from": {}, "to": [], "start": "x", "end": null, "elapsed": true}',
        "quotes": b'{"from": "a\\"; evil", "to": "b\\\\", "start": 1, "end": 2, "elapsed": 1}',
    }
    for key, value in planted.items():
        c.kv.put(f"tuggle.graph/{name}/{key}/x", value)
    r = requests.get(f"{n1.url}/{name}?graph", timeout=10)
    assert r.status_code == 200
    assert '"node1" -> "node2"' in r.text
    svg = requests.get(f"{n1.url}/{name}?graph&format=svg", timeout=30)
    assert svg.status_code == 200 and b"<svg" in svg.content
