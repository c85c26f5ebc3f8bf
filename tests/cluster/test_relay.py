"""Pipelined relay: partial holders serve verified bytes while they fetch; the relay
graph stays acyclic; dying relays are routed around; rate limits hold both ways."""

import hashlib
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
import requests

from tests.cluster.resume import assert_survives_source_kill
from tuggle_agent.engine.peer import INTERNAL_HEADER
from tuggle_agent.harness import TuggleCluster, wait_until

MiB = 2**20


def edges(agent, name):
    """(source, target) of each fetch's final source (dashed edges: sources it switched away from)."""
    dot = agent.get(name + "?graph").text
    return {
        tuple(p.strip().strip('"') for p in line.split("[")[0].split("->"))
        for line in dot.splitlines()
        if "->" in line and "style=dashed" not in line
    }


@contextmanager
def fetching_in_background(agent, name, verified: int = 0):
    """`agent` GETs `name` in the background; yields (the future) once its fetch runs
    and has verified at least `verified` bytes."""
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(agent.get, name, timeout=90)
        wait_until(
            lambda: (f := agent.fetching(name)) and f[0]["verified"] >= verified,
            20,
            what=f"{agent.name} fetching {name}",
        )
        yield future


@pytest.fixture(scope="module")
def relay_cluster4(tmp_path_factory):
    """Four nodes: node2 fetches at 2 MiB/s, so it is a partial holder (a relay) for a while;
    node3 fetches at 2 MiB/s too (a faster node would skip so slow a relay: test_slow_nodes)
    and gives up on a stalled source after 2s. Shared by the module's tests."""
    with TuggleCluster(
        tmp_path_factory.mktemp("relay"),
        nodes=4,
        per_node={"node2": {"fetch_rate": "2MiB"}, "node3": {"stall_timeout": "2s", "fetch_rate": "2MiB"}},
    ) as c:
        yield c


def test_partial_holder_serves_a_peer_before_its_copy_completes(relay_cluster4, unique_name):
    n1, n2, n3, _ = relay_cluster4.agents
    name = unique_name()
    body = os.urandom(8 * MiB)
    n1.put(name, body)
    with fetching_in_background(n2, name, verified=MiB):
        r = requests.get(f"{n2.url}/{name}", headers={INTERNAL_HEADER: "test", "Range": "bytes=0-524287"}, timeout=10)
        assert r.status_code == 206 and r.content == body[:524288]
        assert r.headers["Content-Range"] == f"bytes 0-524287/{len(body)}"
        assert n2.fetching(name), "node2 served a peer while its own fetch was still running"
        assert "node2" not in relay_cluster4.holders(name) and not n2.local_file(name).exists(), (
            "a partial holder must not look like a complete one"
        )
        # node1's only relay slot is node2's: node3 joins the chain behind node2 and keeps pace with it
        r3 = n3.get(name)
        assert r3.content == body
    assert ("node2", "node3") in edges(n1, name) and ("node1", "node2") in edges(n1, name)


def test_peer_reads_of_a_partial_holder_never_run_ahead_of_verification(relay_cluster4, unique_name):
    n1, n2, _, _ = relay_cluster4.agents
    name = unique_name()
    body = os.urandom(6 * MiB)
    n1.put(name, body)
    with fetching_in_background(n2, name):
        # ask for everything at once: the answer trickles in as node2 verifies, and is exact
        r = requests.get(f"{n2.url}/{name}", headers={INTERNAL_HEADER: "test"}, timeout=30)
        assert r.status_code == 200 and hashlib.sha256(r.content).digest() == hashlib.sha256(body).digest()


@contextmanager
def node3_relaying_from_node2(cluster, name: str, body: bytes):
    """node1 stores `body`; slow node2 fetches it and node3 fetches it through node2.
    Yields node3's GET (a future) once node3 has verified 1 MiB from node2. If the test
    breaks node2, node2's own GET fails: its future's error is never read."""
    n1, n2, n3, _ = cluster.agents
    n1.put(name, body)
    # node2 must be a partial holder before node3 starts: a fetch shows in its status as soon
    # as it is created, but announces itself in KV only just before its first bytes. Started
    # in between, node3 rightly takes node1 (a complete holder) and never relays (a flaky wait).
    with fetching_in_background(n2, name, verified=1), ThreadPoolExecutor() as pool:
        got = pool.submit(n3.get, name, timeout=90)
        wait_until(
            lambda: (f := n3.fetching(name)) and f[0]["source"] == "node2" and f[0]["verified"] > MiB,
            20,
            what="node3 relaying from node2",
        )
        yield got


def test_killed_relay_is_routed_around_and_the_copy_verifies(relay_cluster4, unique_name):
    _, n2, n3, _ = relay_cluster4.agents
    name = unique_name()
    body = os.urandom(12 * MiB)
    with node3_relaying_from_node2(relay_cluster4, name, body) as got:
        assert_survives_source_kill(got, n2, n3, name, body, 90)


def test_ten_nodes_syncing_at_once_form_no_cycle(tmp_path, unique_name):
    with TuggleCluster(tmp_path, nodes=10, settings={"fetch_rate": "16MiB", "serve_rate": "16MiB"}, watches=True) as c:
        name = unique_name()
        body = os.urandom(8 * MiB)
        assert c[0].put(name + "?sync", body).status_code == 201
        for a in c.agents:
            wait_until(lambda: a.local_file(name).exists(), 60, what=f"{a.name} to hold a copy")
            assert a.local_file(name).read_bytes() == body
        graph = wait_until(lambda: len(g := edges(c[0], name)) == 9 and g, 10, what="nine graph edges")
        parents = {}
        for src, dst in graph:
            assert dst not in parents, f"{dst} has two final sources: {graph}"
            parents[dst] = src
        assert set(parents) == {f"node{i}" for i in range(2, 11)}
        for node in parents:  # following sources always ends at the origin
            seen = set()
            while node != "node1":
                assert node not in seen, f"cycle through {node}: {graph}"
                seen.add(node)
                node = parents[node]
        wait_until(
            lambda: c.consul().kv.get(f"tuggle.relay/{name}/", recurse=True)[1] is None,
            10,
            what="partial-holder entries withdrawn",
        )


def test_serve_rate_caps_uploads_shared_by_concurrent_peers(tmp_path, unique_name):
    with TuggleCluster(
        tmp_path, nodes=4, settings={"relay": "store-and-forward"}, per_node={"node1": {"serve_rate": "2MiB"}}
    ) as c:
        names = [unique_name() for _ in range(3)]
        for n in names:
            c[0].put(n, os.urandom(2 * MiB))
        t0 = time.monotonic()
        with ThreadPoolExecutor(len(names)) as pool:
            list(pool.map(lambda an: an[0].get(an[1]), zip(c.agents[1:], names, strict=True)))
        elapsed = time.monotonic() - t0
        rate = 6 * MiB / elapsed
        # shared cap (upper); lower bound loose for loaded machines, still catching double counting
        assert 0.6 * 2 * MiB <= rate <= 1.15 * 2 * MiB, f"{rate / MiB:.2f} MiB/s against serve_rate 2 MiB/s"
        for a, n in zip(c.agents[1:], names, strict=True):
            assert a.local_file(n).stat().st_size == 2 * MiB


def test_metrics_show_where_bytes_came_from(relay_cluster4, unique_name):
    n1, _, _, n4 = relay_cluster4.agents

    def sample(agent):
        out = {}
        for line in requests.get(agent.url + "/_tuggle/metrics", timeout=5).text.splitlines():
            if line.startswith("tuggle_"):
                key, value = line.rsplit(" ", 1)
                out[key] = float(value)
        return out

    before1, before4 = sample(n1), sample(n4)
    name = unique_name()
    n1.put(name, os.urandom(4 * MiB))
    assert n4.get(name).status_code == 200
    after1, after4 = sample(n1), sample(n4)

    def delta(a, b, key):
        return a.get(key, 0) - b.get(key, 0)

    assert delta(after4, before4, 'tuggle_fetched_bytes_total{source="complete"}') == 4 * MiB
    assert delta(after4, before4, 'tuggle_fetches_total{result="ok"}') == 1
    assert delta(after1, before1, "tuggle_served_to_peers_bytes_total") == 4 * MiB
    assert delta(after1, before1, "tuggle_uploaded_bytes_total") == 4 * MiB


def test_stalled_relay_is_dropped_after_stall_timeout(relay_cluster4, unique_name):
    _, n2, n3, _ = relay_cluster4.agents
    name = unique_name()
    body = os.urandom(12 * MiB)
    with node3_relaying_from_node2(relay_cluster4, name, body) as got:
        os.killpg(n2.proc.pid, signal.SIGSTOP)  # hung, not dead: the connection stays open
        try:
            r = got.result(90)
            assert r.status_code == 200 and r.content == body
            assert "ReadTimeout" in n3.log() and "resuming from byte" in n3.log()
        finally:
            os.killpg(n2.proc.pid, signal.SIGCONT)
