"""tests/cluster: tests that start real processes — a cluster from tuggle_agent.harness
(the embedded Consul dev agent plus one `tuggle-agent serve` per node, over real HTTP on
127.0.0.1), `tuggle-agent` commands, the hook scripts. Pure logic goes in tests/unit/.

Fixtures: `cluster3` (three nodes, default settings, shared by a module) and
`unique_name`; modules that need other clusters define their own, named for what they
are (fetch_cluster4, relay_cluster4, watch_cluster3, small_disk_cluster).
"""

import itertools

import pytest

from tuggle_agent.harness import TuggleCluster

_names = itertools.count()


@pytest.fixture
def unique_name(request):
    """A fresh object name per call, so tests sharing a cluster never collide."""

    def make(suffix: str = "bin") -> str:
        return f"t{next(_names)}-{request.node.name[:40].replace('[', '-').replace(']', '')}.{suffix}"

    return make


@pytest.fixture(scope="module")
def cluster3(tmp_path_factory):
    """Three nodes, default settings; shared by a module's tests (objects get unique names)."""
    with TuggleCluster(tmp_path_factory.mktemp("c3"), nodes=3) as c:
        yield c
