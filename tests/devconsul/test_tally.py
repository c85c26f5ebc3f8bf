"""Request accounting (bench/consul_load.py's meter): off by default; once on, every
request a node answers is counted with its body sizes, and the node's own watch
plans are told apart from other clients."""

from __future__ import annotations

from tuggle_agent.devconsul.node.tally import Count

from .helpers import Recorder, write_config


def test_tally_counts_requests_and_bytes_by_client(tmp_path, make_cluster):
    rec = Recorder(tmp_path)
    cfg = write_config(tmp_path / "cfg", {"type": "key", "key": "k", "args": rec.args()})
    cluster = make_cluster(nodes=2, config_dirs=[cfg])
    node1 = cluster.node("node1")
    assert node1.tally is None  # nothing is counted unless asked
    rec.wait(1)
    tally = node1.count_requests()
    c = cluster.consul("node1")
    c.kv.put("k", b"12345")
    rec.wait(2)  # node1's watch plan got the new value: its blocking query was answered
    counts = tally.take()
    assert counts[("api", "PUT", "/v1/kv/k")] == Count(requests=1, bytes_in=5, bytes_out=len(b"true"))
    watched = counts[("watch", "GET", "/v1/kv/k")]
    assert watched.requests == 1 and watched.bytes_in == 0 and watched.bytes_out > len(b"12345")
    assert tally.take() == {}  # take() starts again from zero
    assert cluster.node("node2").tally is None  # per node
