"""The product's semaphore (tuggle_agent.consul.semaphore, Go api.Semaphore protocol) on the
dev agent: the limit holds under contention, and a crashed holder's slot frees itself."""

from __future__ import annotations

import json
import threading
import time

import requests

from tuggle_agent.consul.semaphore import FLAGS, Semaphore
from tuggle_agent.harness import wait_until


class ShortSession:
    """A session with the dev agent's 1 s minimum TTL (py-consul refuses TTLs under 10 s),
    renewed until crash(): then it expires and Consul deletes the keys it locked."""

    def __init__(self, http_addr: str, ttl: str = "1s"):
        body = {"TTL": ttl, "Behavior": "delete", "LockDelay": "0s"}
        self.id = requests.put(f"http://{http_addr}/v1/session/create", json=body, timeout=5).json()["ID"]
        self._url = f"http://{http_addr}/v1/session/renew/{self.id}"
        self._stop = threading.Event()
        threading.Thread(target=self._renew, daemon=True).start()

    def _renew(self) -> None:
        while not self._stop.wait(0.3):
            try:
                requests.put(self._url, timeout=5)
            except requests.RequestException:
                return  # the dev cluster is gone: the test is over

    def crash(self) -> None:
        self._stop.set()


def test_limit_holds_with_concurrent_contenders(dev_cluster):
    limit, contenders = 2, 6
    holding: set[int] = set()
    peak = 0
    acquired: list[int] = []
    guard = threading.Lock()

    def contend(n: int) -> None:
        nonlocal peak
        node = dev_cluster.nodes[n % len(dev_cluster.nodes)]
        sem = Semaphore(dev_cluster.consul(node.name), "sem/src", limit, ShortSession(node.http_addr))
        assert sem.acquire(wait=20)
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
    crashed_session = ShortSession(dev_cluster.node("node1").http_addr)
    holder = Semaphore(c, "sem/crash", 1, crashed_session)
    assert holder.acquire(wait=5)
    waiter_session = ShortSession(dev_cluster.node("node2").http_addr)
    waiter = Semaphore(dev_cluster.consul("node2"), "sem/crash", 1, waiter_session)
    assert not waiter.has_free_slot()
    crashed_session.crash()  # keeps its slot in .lock, but its session is no longer renewed
    crashed = time.monotonic()
    assert waiter.acquire(wait=10)
    assert time.monotonic() - crashed > 1.0  # not before the crashed session's TTL ran out
    assert c.session.info(crashed_session.id)[1] is None
    assert c.kv.get(f"sem/crash/{crashed_session.id}")[1] is None  # behavior=delete removed it
    assert json.loads(c.kv.get("sem/crash/.lock")[1]["Value"])["Holders"] == {waiter_session.id: True}
    waiter.release()
    wait_until(lambda: len(c.kv.get("sem/crash", recurse=True)[1] or []) == 1, what="only .lock left")
