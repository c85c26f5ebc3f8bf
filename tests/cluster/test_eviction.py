"""Disk lifecycle on a real cluster: node3 has a small cache (cache.max_disk), so a few
objects fill it.  Least recently read copies that other nodes hold go first; pinned
copies, copies whose other holders are down and copies being read stay; a download
that cannot fit is refused at once."""

import os
import socket
import time

import pytest
import requests

from tuggle_agent.harness import TuggleCluster, wait_until

MiB = 2**20


def cluster_with_small_cache(tmp_path, max_disk):
    return TuggleCluster(tmp_path, nodes=3, per_node={"node3": {"cache": {"max_disk": max_disk}}})


@pytest.fixture
def cache3(tmp_path):
    """node3 may keep 3 MiB: high watermark 2.7 MiB, low 2.4 MiB (defaults 90% / 80%)."""
    with cluster_with_small_cache(tmp_path, "3MiB") as c:
        yield c


def spread(c, names, size=MiB):
    """PUT on node1, GET on node2: two other holders for node3 (min_copies is 2)."""
    for name in names:
        assert c[0].put(name, os.urandom(size)).status_code == 201
        assert c[1].get(name).status_code == 200
    for name in names:
        wait_until(lambda n=name: c.holders(n) == {"node1", "node2"}, 10, what=f"{name} held by node1 and node2")


def read(agent, name):
    """GET, then wait for the end of the node's fetch (its hooks and holder tag): a copy
    still being fetched is never evicted."""
    r = agent.get(name)
    assert r.status_code == 200, (r.status_code, r.text)
    wait_until(lambda: agent.fetching(name) == [], 10, what=f"{agent.name}'s fetch of {name} over")


def disk(agent):
    return requests.get(agent.url + "/_tuggle/status", timeout=5).json()["disk"]


def local_bytes(agent):
    return sum(p.stat().st_size for p in agent.data_dir.iterdir() if p.is_file())


def metric(agent, prefix):
    text = requests.get(agent.url + "/_tuggle/metrics", timeout=5).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix))


def test_least_recently_read_copy_is_evicted_and_untagged_down_to_the_low_watermark(cache3, unique_name):
    c, n3 = cache3, cache3[2]
    a, b, new = unique_name(), unique_name(), unique_name()
    spread(c, [a, b, new])
    read(n3, a)
    read(n3, b)
    read(n3, a)  # b is now the least recently read
    read(n3, new)  # 2 + 1 MiB > 2.7 MiB: evict down to 2.4 MiB
    assert not n3.local_file(b).exists()
    assert n3.local_file(a).exists() and n3.local_file(new).exists()
    wait_until(lambda: c.holders(b) == {"node1", "node2"}, 10, what="node3's holder tag of b dropped")
    assert "node3" in c.holders(a) and "node3" in c.holders(new)
    d = wait_until(lambda: (s := disk(n3))["used"] <= s["low"] and s, 10, what="usage at or below low watermark")
    assert (d["max"], d["high"], d["low"]) == (3 * MiB, int(3 * MiB * 0.9), int(3 * MiB * 0.8))
    assert local_bytes(n3) <= d["low"] and d["evictions"] == 1 and d["refusals"] == 0
    assert metric(n3, 'tuggle_evictions_total{reason="watermark"}') == 1
    wait_until(lambda: metric(n3, "tuggle_disk_used_bytes") == local_bytes(n3), 10, what="disk use gauge")
    assert f"removed local copy of {b}: evicted (watermark" in n3.log()
    # fetched again on the next GET
    read(n3, b)
    assert n3.local_file(b).exists()


def test_pinned_copy_survives_and_the_next_one_goes(cache3, unique_name):
    c, n3 = cache3, cache3[2]
    pinned, x, y = unique_name(), unique_name(), unique_name()
    spread(c, [pinned, x, y])
    read(n3, pinned)
    r = requests.post(f"{c[0].url}/{pinned}?sync&node=^node3$", timeout=10)
    assert r.status_code == 202, r.text
    read(n3, x)
    read(n3, y)  # pinned is the least recently read, but ?sync targets node3: x goes
    assert n3.local_file(pinned).exists() and "node3" in c.holders(pinned)
    assert not n3.local_file(x).exists()
    assert n3.local_file(y).exists()


def test_copies_whose_other_holders_are_down_survive(cache3, unique_name):
    c, n3 = cache3, cache3[2]
    a, b = unique_name(), unique_name()
    spread(c, [a, b])
    read(n3, a)
    read(n3, b)
    new = unique_name()
    assert c[0].put(new, os.urandom(MiB)).status_code == 201
    c[1].stop()  # a and b keep one other passing holder (node1): fewer than min_copies (2)
    wait_until(lambda: not c.passing("node2"), 10, what="node2 gone")
    read(n3, new)  # 3 MiB fits max_disk; above the high watermark, but nothing may go
    for name in (a, b, new):
        assert n3.local_file(name).exists(), name
    assert c.holders(a) == {"node1", "node3"} and c.holders(b) == {"node1", "node3"}
    assert disk(n3)["evictions"] == 0


def test_larger_than_max_disk_is_refused_at_once_without_a_temp_file(cache3, unique_name):
    c, n3 = cache3, cache3[2]
    big = unique_name()
    assert c[0].put(big, os.urandom(4 * MiB)).status_code == 201
    started = time.monotonic()
    r = n3.get(big)
    assert r.status_code == 507, (r.status_code, r.text)
    assert time.monotonic() - started < 2
    assert f"needs {4 * MiB} bytes" in r.text and "max_disk" in r.text, r.text
    assert list((n3.data_dir / ".tmp").iterdir()) == []
    assert not n3.local_file(big).exists() and c.holders(big) == {"node1"}
    assert disk(n3)["refusals"] == 1 and metric(n3, "tuggle_fetch_refusals_total") == 1
    # what fits still works
    small = unique_name()
    c[0].put(small, b"fits")
    assert n3.get(small).content == b"fits"


def test_copy_streamed_to_a_slow_reader_survives(tmp_path, unique_name):
    size = 16 * MiB  # well beyond what loopback socket buffers absorb
    with cluster_with_small_cache(tmp_path, "40MiB") as c:
        n3 = c[2]
        a, b, new = unique_name(), unique_name(), unique_name()
        spread(c, [a, b, new], size)
        read(n3, a)
        read(n3, b)
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.connect(("127.0.0.1", n3.port))
        try:
            slow.sendall(f"GET /{a} HTTP/1.1\r\nHost: node3\r\n\r\n".encode())
            assert b"200 OK" in slow.recv(4096)
            read(n3, b)  # read after a: a is the least recently read, but being read
            read(n3, new)  # 48 MiB > 40: one copy must go
            assert n3.local_file(a).exists() and "node3" in c.holders(a)
            assert not n3.local_file(b).exists()
        finally:
            slow.close()


def test_copies_not_read_for_max_age_are_evicted_when_not_needed(tmp_path, unique_name):
    with TuggleCluster(tmp_path, nodes=3, per_node={"node3": {"cache": {"max_age": "2s"}}}) as c:
        n3 = c[2]
        old, last, fresh = unique_name(), unique_name(), unique_name()
        spread(c, [old, fresh])
        assert c[0].put(last, os.urandom(MiB)).status_code == 201  # node1 only: one other holder
        read(n3, old)
        read(n3, last)
        time.sleep(2.5)
        read(n3, fresh)  # a download: a pass that looks for copies not read within max_age
        wait_until(lambda: not n3.local_file(old).exists(), 10, what="old copy evicted")
        assert n3.local_file(last).exists() and n3.local_file(fresh).exists()
        assert metric(n3, 'tuggle_evictions_total{reason="max_age"}') == 1
        assert f"removed local copy of {old}: evicted (max_age" in n3.log()
