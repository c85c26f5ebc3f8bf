"""A slow node slows only itself (README "Distribution speed", engine/switching.py): it
sinks behind faster fetchers instead of heading the relay chain, and a fetch leaves a
source that stays well below what it can take once a better holder is free.  Nodes are
made slow the way operators do, with fetch_rate / serve_rate in their config."""

import os
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tuggle_agent.harness import TuggleCluster, wait_until

MiB = 2**20


def graph(agent, name) -> list[tuple[str, str, str | None]]:
    """(source, target, reason it was left or None for the final source) per ?graph edge."""
    out = []
    for line in agent.get(name + "?graph").text.splitlines():
        m = re.match(r'\s*"([^"]+)" -> "([^"]+)" \[label="(left: (\w+))?', line)
        if m:
            out.append((m.group(1), m.group(2), m.group(4)))
    return out


def final_sources(agent, name, targets) -> tuple[dict, list]:
    """Once every target's final edge is in ?graph: {target: final source}, all edges."""

    def complete():
        edges = graph(agent, name)
        return {dst for _, dst, why in edges if why is None} >= set(targets) and edges

    edges = wait_until(complete, 10, what=f"final graph edges of {targets}")
    return {dst: src for src, dst, why in edges if why is None}, edges


def fetching_from(agent, name, source) -> None:
    wait_until(
        lambda: (f := agent.fetching(name)) and f[0]["source"] == source and f[0]["verified"] > 0,
        20,
        what=f"{agent.name} fetching from {source}",
    )


def switches(agent, reason: str) -> float:
    text = requests.get(agent.url + "/_tuggle/metrics", timeout=5).text
    m = re.search(rf'^tuggle_source_switches_total\{{reason="{reason}"\}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


@pytest.fixture(scope="module")
def slow_cluster(tmp_path_factory):
    """node2 fetches and serves at 1 MiB/s, the others at 16 MiB/s."""
    with TuggleCluster(
        tmp_path_factory.mktemp("slow"),
        nodes=4,
        settings={"fetch_rate": "16MiB", "serve_rate": "16MiB"},
        per_node={"node2": {"fetch_rate": "1MiB", "serve_rate": "1MiB"}},
    ) as c:
        yield c


def test_a_slow_node_that_joins_first_does_not_head_the_chain(slow_cluster, unique_name):
    n1, n2, n3, n4 = slow_cluster.agents
    name = unique_name()
    body = os.urandom(8 * MiB)  # 8 s for node2, 0.5 s at full rate
    n1.put(name, body)
    sinks_before = switches(n2, "sink")
    with ThreadPoolExecutor(3) as pool:
        slow = pool.submit(n2.get, name, timeout=90)
        # node2 holds node1's only relay slot before the fast nodes start
        fetching_from(n2, name, "node1")
        fast = [pool.submit(a.get, name, timeout=90) for a in (n3, n4)]
        assert all(f.result().content == body for f in fast)
        # Behind node2 they could not complete before node2 verified every byte.
        left = n2.fetching(name)
        assert left and left[0]["verified"] < len(body), "the fast nodes waited for the slow one"
        assert slow.result().content == body
    final, edges = final_sources(n1, name, ["node2", "node3", "node4"])
    assert final["node3"] != "node2" and final["node4"] != "node2", edges
    assert not any(src == "node2" for src, _, _ in edges), f"node2 relayed to a faster node: {edges}"
    assert ("node1", "node2", "sink") in edges, f"node2 did not give up its place: {edges}"
    assert switches(n2, "sink") > sinks_before


def test_a_slow_source_is_left_for_a_free_faster_holder(tmp_path, unique_name):
    with TuggleCluster(tmp_path, nodes=3, settings={"fetch_rate": "16MiB"}) as c:
        n1, n2, n3 = c.agents
        name = unique_name()
        body = os.urandom(8 * MiB)
        n1.put(name, body)
        assert n2.get(name).content == body
        # node2 (a fast complete holder) goes away; node1 comes back serving at 512 KiB/s,
        # which no relay entry announces: only the rate node3 measures shows it.
        n2.stop()
        n1.write_config(serve_rate="512KiB")
        n1.restart()
        wait_until(lambda: c.holders(name) == {"node1"}, 20, what="node1 the only holder")
        with ThreadPoolExecutor(1) as pool:
            got = pool.submit(n3.get, name, timeout=90)
            fetching_from(n3, name, "node1")
            n2.start()
            wait_until(lambda: "node2" in c.holders(name), 20, what="node2 a holder again")
            assert got.result().content == body
        final, edges = final_sources(n1, name, ["node3"])
        assert final["node3"] == "node2", f"node3 did not finish from the fast holder: {edges}"
        assert ("node1", "node3", "slow") in edges, edges
        assert switches(n3, "slow") >= 1
