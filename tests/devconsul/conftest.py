"""tests/devconsul: the embedded Consul dev agent (tuggle_agent/devconsul) against
Consul's documented behaviour, in process and as `tuggle-agent devconsul`.

Fixtures for the dev agent's tests: a started 3-node DevCluster with test
timings, and a factory for clusters with other options."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tuggle_agent.devconsul import DevCluster, Timings


@pytest.fixture
def make_cluster() -> Iterator[Callable[..., DevCluster]]:
    """Start clusters with custom options; all are stopped after the test."""
    started: list[DevCluster] = []

    def make(**options) -> DevCluster:
        options.setdefault("timings", Timings.fast())
        cluster = DevCluster(**options).start()
        started.append(cluster)
        return cluster

    yield make
    for cluster in started:
        cluster.stop()


@pytest.fixture
def dev_cluster(make_cluster) -> DevCluster:
    """A started 3-node cluster (node1..node3) with Timings.fast()."""
    return make_cluster(nodes=3)


@pytest.fixture
def c(dev_cluster):
    """py-consul client of node1."""
    return dev_cluster.consul("node1")


@pytest.fixture
def base_url(dev_cluster) -> str:
    return f"http://{dev_cluster.node('node1').http_addr}"
