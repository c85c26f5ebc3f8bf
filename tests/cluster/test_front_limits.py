"""Refuse before receiving, and connections that must not take the node out of service
(issue 8 §4): real sockets against a real `serve`."""

import http.client
import os
import threading
import time

import pytest
import requests

from tuggle_agent.harness import TuggleCluster, wait_until
from tuggle_agent.harness.probes import answer_before_body, ping_latencies, slow_peer_readers

MiB = 1 << 20
BIG = 300 * MiB


@pytest.fixture(scope="module")
def limits_cluster(tmp_path_factory):
    """node1 accepts writes from 127.0.0.1 only and at most 64 MiB; node2 is fetch-only;
    node2 serves at most 4 peers at once."""
    with TuggleCluster(
        tmp_path_factory.mktemp("limits"),
        nodes=2,
        settings={"max_upload_size": "64MiB"},
        per_node={"node1": {"write_allow": ["127.0.0.1/32"]}, "node2": {"fetch_only": True, "max_serving_peers": 4}},
    ) as c:
        yield c


@pytest.mark.parametrize(
    "case,node,path,source,status",
    [
        ("outside write_allow", 0, "/a-new-name", "127.0.0.2", "403"),
        ("existing name", 0, "/exists.bin", "127.0.0.1", "409"),
        ("bad name", 0, "/.bad", "127.0.0.1", "400"),
        ("fetch-only node", 1, "/a-new-name", "127.0.0.1", "405"),
        ("above max_upload_size", 0, "/too-big", "127.0.0.1", "413"),
    ],
)
def test_refusals_come_before_the_body(limits_cluster, case, node, path, source, status):
    c = limits_cluster
    if case == "existing name" and c[0].get("exists.bin").status_code == 404:
        assert c[0].put("exists.bin", b"here").status_code == 201
    head = f"PUT {path} HTTP/1.1\r\nHost: x\r\n"
    # 60 MiB is within max_upload_size (64 MiB): only the 413 case announces more.
    size = BIG if status == "413" else 60 * MiB
    line, sent, closed = answer_before_body(c[node].port, head, size, source)
    assert status in line, f"{case}: {line}"
    assert sent < MiB, f"{case}: the client could send {sent} bytes of the body before the answer"
    assert closed, f"{case}: the connection must be closed rather than the body drained"
    assert c[0].get("?ping").status_code == 200


def test_accepted_upload_streams_to_the_data_dir(limits_cluster, unique_name):
    c = limits_cluster
    name = unique_name()
    body = os.urandom(20 * MiB)
    seen = []

    def watch_tmp():
        # While the body arrives, the temp file in the data dir grows: the app has the socket.
        for _ in range(400):
            seen.extend(p.stat().st_size for p in (c[0].data_dir / ".tmp").glob("upload.*"))
            time.sleep(0.005)

    t = threading.Thread(target=watch_tmp)
    t.start()

    conn = http.client.HTTPConnection("127.0.0.1", c[0].port, timeout=60)
    conn.putrequest("PUT", f"/{name}")
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders()
    for i in range(0, len(body), MiB):  # 1 MiB every 50 ms: the upload takes about a second
        conn.send(body[i : i + MiB])
        time.sleep(0.05)
    status = conn.getresponse().status
    conn.close()
    t.join()
    assert status == 201
    assert any(0 < n < len(body) for n in seen), "the body was not written as it arrived"
    assert c[0].local_file(name).read_bytes() == body


def test_slow_readers_posing_as_peers_do_not_take_the_node_down(limits_cluster, unique_name):
    c = limits_cluster
    name = unique_name()
    assert c[0].put(name, os.urandom(16 * MiB)).status_code == 201
    assert c[1].get(name).status_code == 200  # node2 holds a copy now
    with slow_peer_readers(c[1].port, name, 70) as statuses:
        assert statuses.count("200") == 4 and statuses.count("503") == 66, statuses
        latencies = ping_latencies(c[1].url, 5)
        assert all(x is not None and x < 1.0 for x in latencies), latencies
    wait_until(lambda: requests.get(c[1].url + "/_tuggle/metrics", timeout=5).status_code == 200, what="metrics")


def test_peer_reads_of_a_complete_copy_honour_ranges_and_give_their_slot_back(limits_cluster, unique_name):
    """A peer read of a complete copy is sent with sendfile(): the range asked for, its
    Content-Range, and the slot (max_serving_peers: 4) returned after each body -- read to
    the end, abandoned after one byte, or a HEAD that sends none."""
    c = limits_cluster
    name = unique_name()
    body = os.urandom(3 * MiB + 5)
    assert c[0].put(name, body).status_code == 201
    assert c[1].get(name).status_code == 200  # node2 holds a copy now
    url, peer = f"{c[1].url}/{name}", {"X-Tuggle-Internal": "test"}
    for i in range(6):  # more reads of each kind than node2 has slots
        start = 1 + i * 500_001
        r = requests.get(url, headers={**peer, "Range": f"bytes={start}-"}, timeout=10)
        assert r.status_code == 206 and r.content == body[start:], (i, r.status_code)
        assert r.headers["Content-Range"] == f"bytes {start}-{len(body) - 1}/{len(body)}"
        r = requests.get(url, headers={**peer, "Range": f"bytes={start}-{start + 9}"}, timeout=10)
        assert r.status_code == 206 and r.content == body[start : start + 10]
        assert requests.head(url, headers=peer, timeout=10).status_code == 200
        with requests.get(url, headers=peer, stream=True, timeout=10) as r:
            assert r.status_code == 200 and r.raw.read(1) == body[:1]
    # every slot came back (an abandoned body is closed by the server once the peer is gone)
    wait_until(lambda: requests.get(url, headers=peer, timeout=10).content == body, what="a whole peer read")
