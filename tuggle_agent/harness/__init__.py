"""The local-cluster harness: the embedded Consul dev agent plus one real
`tuggle-agent serve` process per node, on 127.0.0.1. One implementation for the
tests (tests/cluster/), the benchmarks (bench/) and `tuggle-agent dev`.

    from tuggle_agent.harness import TuggleCluster, wait_until
    with TuggleCluster(tmp_path, nodes=3, watches=True) as c:
        c[0].put("a.bin", b"data")
        assert c[1].get("a.bin").content == b"data"
        wait_until(lambda: c.holders("a.bin") == {"node1", "node2"}, what="node2 tagged")

It imports the dev agent and `requests`: nothing in the agent itself imports it.
"""

from .cluster import (
    FAST_AGENT_SETTINGS,
    Agent,
    ClusterError,
    PortsTaken,
    TuggleCluster,
    UncleanStop,
    agent_command,
    agent_env,
)
from .wait import WaitTimeout, free_port, free_port_range, port_is_free, wait_until

__all__ = [
    "FAST_AGENT_SETTINGS",
    "Agent",
    "ClusterError",
    "PortsTaken",
    "TuggleCluster",
    "UncleanStop",
    "WaitTimeout",
    "agent_command",
    "agent_env",
    "free_port",
    "free_port_range",
    "port_is_free",
    "wait_until",
]
