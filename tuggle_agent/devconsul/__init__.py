"""An in-process stand-in for `consul agent -dev`, speaking the Consul HTTP
API subset tuggle-agent uses, for tests and local development.

    from tuggle_agent.devconsul import DevCluster, Timings
    with DevCluster(nodes=3, timings=Timings.fast()) as cluster:
        c = cluster.consul("node1")
"""

from .cluster import DevCluster
from .config import ConfigError
from .timings import Timings

__all__ = ["ConfigError", "DevCluster", "Timings"]
