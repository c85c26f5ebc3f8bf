"""Source choice follows Consul's network coordinates: same-zone holders first."""

import os

from tuggle_agent.harness import TuggleCluster, wait_until


def test_fetch_prefers_the_holder_in_the_same_zone(tmp_path, unique_name):
    # zones=2, round-robin: node1, node3 in zone 0; node2, node4 in zone 1 (~20 ms apart)
    with TuggleCluster(tmp_path, nodes=4, zones=2, per_node={"node4": {"nearest": 1}}) as c:
        n1, n2, _, n4 = c.agents
        for _ in range(3):
            name = unique_name()
            n1.put(name, os.urandom(50_000))
            assert n2.get(name).status_code == 200  # node2 can only fetch from node1
            wait_until(lambda: c.holders(name) == {"node1", "node2"}, what="node2 tagged")
            assert n4.get(name).status_code == 200
            dot = wait_until(lambda: (t := n1.get(name + "?graph").text).count("->") == 2 and t, what="edges")
            assert '"node2" -> "node4"' in dot, f"node4 should fetch from node2, its zone:\n{dot}"
