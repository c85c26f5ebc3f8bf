"""An in-process stand-in for `consul agent -dev`, speaking the Consul HTTP
API subset tuggle-agent uses, for tests and local development.

    from tuggle_agent.devconsul import DevCluster, Timings
    with DevCluster(nodes=3, timings=Timings.fast()) as cluster:
        c = cluster.consul("node1")          # py-consul client of node1
        cluster.stop_node("node2")           # node failure: serfHealth critical
        cluster.restart_node("node2")        # comes back empty, watches re-fire

Layout, bottom to top (a module imports only its own layer or lower ones;
tests/devconsul/test_layering.py checks it): codec, config, errors, timers,
timings, version -- shared vocabulary; state/ -- the servers' replicated
state; node/ -- one simulated agent; http/ -- the HTTP API endpoints and
listener; cluster.py and cli.py wire them together.

Behaviour worth knowing (see the module docstrings for details):
* Every node is a server of dc1; all share one KV store, catalog and session
  table; each has its own local services/checks, 256-event buffer, watches
  and coordinate. The leader is the first node that is up.
* `--zones`/`zones=` assigns node i to zone (i-1) % zones (round-robin);
  same-zone RTT ~0.2 ms, cross-zone ~20 ms. `set_coordinate` overrides.
* stop_node/kill_node model an agent failure (not `consul leave`): the HTTP
  listener closes, watch handlers get SIGTERM (kill: SIGKILL), serfHealth
  turns critical, the node's sessions are invalidated; its catalog entries
  stay. restart_node keeps the port and node ID, forgets local services,
  checks and events (no persisted agent state) and re-reads config dirs.
* A missing config dir only logs a warning (Consul would refuse to start).
* `Agent.inject_errors(n, status)` makes a node's next n requests fail, to
  exercise clients' (and watches') error paths.
* `Agent.count_requests()` turns on a per-node tally of requests and body
  bytes, telling the node's own watch plans from other clients (node/tally.py;
  bench/consul_load.py measures Consul load with it).
* `DevCluster(acl=True, acl_master_token=...)` turns on Consul's ACLs with
  default policy deny (each http/ module says what it enforces). Note
  that py-consul 1.8 sends no token on event.list, coordinate.nodes,
  agent.self and agent.members, so under ACLs those act as anonymous.
"""

from .cluster import DevCluster
from .config import ConfigError
from .timings import Timings

__all__ = ["ConfigError", "DevCluster", "Timings"]
