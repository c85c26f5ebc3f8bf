"""The Go api.Semaphore protocol works unchanged on the dev agent."""

from __future__ import annotations

import json
import threading
import time

from tuggle_agent.harness import wait_until

from .semaphore_client import FLAGS, Semaphore


def test_limit_holds_with_concurrent_contenders(dev_cluster):
    limit, contenders = 2, 6
    holding: set[int] = set()
    peak = 0
    acquired: list[int] = []
    guard = threading.Lock()

    def contend(n: int) -> None:
        nonlocal peak
        node = dev_cluster.nodes[n % len(dev_cluster.nodes)]
        sem = Semaphore(dev_cluster.consul(node.name), node.http_addr, "sem/src", limit)
        assert sem.acquire(timeout=20)
        with guard:
            holding.add(n)
            peak = max(peak, len(holding))
            acquired.append(n)
        time.sleep(0.15)
        with guard:
            holding.discard(n)
        sem.release()

    threads = [threading.Thread(target=contend, args=(n,)) for n in range(contenders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(acquired) == list(range(contenders))
    assert peak == limit
    c = dev_cluster.consul("node1")
    lock = c.kv.get("sem/src/.lock")[1]
    assert lock["Flags"] == FLAGS
    assert json.loads(lock["Value"]) == {"Limit": limit, "Holders": {}}
    assert [p["Key"] for p in c.kv.get("sem/src", recurse=True)[1]] == ["sem/src/.lock"]


def test_crashed_holder_frees_its_slot_after_session_ttl(dev_cluster):
    c = dev_cluster.consul("node1")
    addr = dev_cluster.node("node1").http_addr
    holder = Semaphore(c, addr, "sem/crash", 1)
    assert holder.acquire(timeout=5)
    holder.crash()  # keeps its slot in .lock, but its session is no longer renewed
    crashed = time.monotonic()

    waiter = Semaphore(dev_cluster.consul("node2"), dev_cluster.node("node2").http_addr, "sem/crash", 1)
    assert waiter.acquire(timeout=10)
    waited = time.monotonic() - crashed
    assert waited > 1.0  # not before the crashed session's TTL ran out
    assert c.session.info(holder.session)[1] is None
    assert c.kv.get(f"sem/crash/{holder.session}")[1] is None  # behavior=delete removed it
    holders = json.loads(c.kv.get("sem/crash/.lock")[1]["Value"])["Holders"]
    assert holders == {waiter.session: True}
    waiter.release()
    wait_until(lambda: c.kv.get("sem/crash", recurse=True)[1] and len(c.kv.get("sem/crash", recurse=True)[1]) == 1)
