"""A node holding many copies advertises them in batches (consul/holders.py): its holder
keys go through `PUT /v1/txn`, 64 per request, at start and whenever its holder session
is re-created; a key another session holds fails its batch, and the batch's other keys
are still written one by one."""

from __future__ import annotations

import pytest

from tuggle_agent.consul.holders import TXN_OPS
from tuggle_agent.harness import TuggleCluster, wait_until
from tuggle_agent.harness.plant import plant_objects

M = 300


def holder_writes(tally) -> tuple[int, int]:
    """(transactions, single holder-key PUTs) since the last take()."""
    counts = tally.take()
    txns = sum(n.requests for (_, method, path), n in counts.items() if method == "PUT" and path == "/v1/txn")
    singles = sum(
        n.requests
        for (_, method, path), n in counts.items()
        if method == "PUT" and path.startswith("/v1/kv/tuggle.holders/")
    )
    return txns, singles


def keys_of(c: TuggleCluster, node: str) -> dict[str, str]:
    """Holder key -> session of `node`'s holder keys."""
    _, entries = c.consul().kv.get("tuggle.holders/", recurse=True)
    return {e["Key"]: e.get("Session", "") for e in entries or [] if e["Key"].endswith("/" + node)}


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    planted = []

    def before(c: TuggleCluster) -> None:
        planted.extend(plant_objects(c, M, lambda i: ["node1"]))
        c.dev.node("node1").count_requests().take()  # counted from node1's very first request

    with TuggleCluster(tmp_path_factory.mktemp("batches"), nodes=1, before_agents=before) as c:
        yield c, planted


def test_many_copies_are_advertised_in_batches(many):
    c, planted = many
    tally = c.dev.node("node1").count_requests()
    txns, singles = holder_writes(tally)  # start() returned: every key is written
    held = keys_of(c, "node1")
    assert held == {f"tuggle.holders/{m.name}/{m.version}/node1": held[next(iter(held))] for m in planted}
    assert len(set(held.values())) == 1 and all(held.values())  # one session holds them all
    assert txns <= -(-M // TXN_OPS) + 2, txns  # M/64 requests, not M
    assert singles <= 2, singles


def test_a_key_locked_by_another_session_does_not_stop_the_others(many):
    c, planted = many
    n1 = c[0]
    n1.stop()  # its session goes, and its keys with it
    assert keys_of(c, "node1") == {}
    consul = c.consul()
    other = consul.session.create(name="someone else", behavior="delete", lock_delay=0)
    taken = f"tuggle.holders/{planted[7].name}/{planted[7].version}/node1"
    assert consul.kv.put(taken, b'{"address":"127.0.0.1","port":1}', acquire=other)
    tally = c.dev.node("node1").count_requests()
    tally.take()
    n1.start(wait=False)  # never fully "advertising": one key is not its to write
    wait_until(lambda: len(keys_of(c, "node1")) == M, 30, what="node1's holder keys")
    wait_until(lambda: "is locked by another session" in n1.log(), 10, what="the locked key to be logged")
    held = keys_of(c, "node1")
    assert held.pop(taken) == other
    assert len(set(held.values())) == 1 and other not in held.values()
    txns, singles = holder_writes(tally)
    # the batch with the locked key is written one by one, the others in one request each
    assert txns <= -(-M // TXN_OPS) + 2 and singles <= TXN_OPS + 2, (txns, singles)
    assert n1.log().count(f"holder key {taken} is locked by another session") == 1
    consul.session.destroy(other)
    n1.stop()
    n1.start()
    assert not c.dead_agents() and "Traceback" not in c.logs()
