"""Ten nodes fetching one object at once: no source ever feeds more than 3."""

import json
import os
import threading

import consul

from tuggle_agent.harness import TuggleCluster

MiB = 2**20


def test_at_most_three_concurrent_fetches_per_source(tmp_path):
    with TuggleCluster(tmp_path, nodes=10, settings={"fetch_rate": "4MiB", "relay": "store-and-forward"}) as c:
        name = "fanout.bin"
        body = os.urandom(2 * MiB)
        assert c[0].put(name, body).status_code == 201
        peak: dict[str, int] = {}
        stop = threading.Event()
        watcher_client = consul.Consul(port=c.dev.node("node1").port)

        def watch():
            index = None
            while not stop.is_set():
                index, entries = watcher_client.kv.get("tuggle.lock/", recurse=True, index=index, wait="1s")
                for e in entries or []:
                    if e["Key"].endswith("/.lock") and e["Value"]:
                        source = e["Key"].split("/")[1]
                        n = len(json.loads(e["Value"])["Holders"])
                        peak[source] = max(peak.get(source, 0), n)

        w = threading.Thread(target=watch, daemon=True)
        w.start()
        results = {}
        threads = [
            threading.Thread(target=lambda a=a: results.__setitem__(a.name, a.get(name, timeout=120).content))
            for a in c.agents[1:]
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stop.set()
        w.join(5)
        assert all(v == body for v in results.values()) and len(results) == 9
        assert peak, "no semaphore was ever taken"
        assert max(peak.values()) <= 3, peak
        assert peak.get("node1") == 3, f"node1 should have been used to its limit: {peak}"
