"""HTTP conventions: unknown endpoints, methods, bodies, keep-alive, and
many blocked queries not starving other requests."""

from __future__ import annotations

import http.client
import logging
import statistics
import threading
import time

import requests

from tuggle_agent.harness import wait_until


def test_unknown_endpoint_names_itself_and_logs(base_url, caplog):
    with caplog.at_level(logging.WARNING, logger="tuggle_agent.devconsul"):
        resp = requests.get(f"{base_url}/v1/operator/raft/configuration")
    assert resp.status_code == 404
    assert resp.text.startswith("Invalid URL path: not a recognized HTTP API endpoint")
    assert "tuggle-agent devconsul does not implement GET /v1/operator/raft/configuration" in resp.text
    assert any("/v1/operator/raft/configuration" in r.getMessage() for r in caplog.records)


def test_wrong_method_is_405_with_allow(base_url):
    resp = requests.post(f"{base_url}/v1/kv/x")
    assert resp.status_code == 405 and resp.headers["Allow"] == "GET,PUT,DELETE"
    resp = requests.get(f"{base_url}/v1/session/create")
    assert resp.status_code == 405 and resp.headers["Allow"] == "PUT"


def test_bad_json_is_400_and_errors_are_plain_text(base_url):
    resp = requests.put(f"{base_url}/v1/session/create", data=b"{not json")
    assert resp.status_code == 400 and resp.text.startswith("Request decode failed")
    assert resp.headers["Content-Type"].startswith("text/plain")


def test_keep_alive_and_content_length(dev_cluster):
    conn = http.client.HTTPConnection("127.0.0.1", dev_cluster.node("node1").port)
    for _ in range(3):
        conn.request("PUT", "/v1/kv/ka", body=b"v")
        resp = conn.getresponse()
        assert resp.getheader("Content-Length") == "4" and resp.read() == b"true"
    conn.request("GET", "/v1/agent/reload")
    resp = conn.getresponse()
    assert resp.status == 405 and int(resp.getheader("Content-Length")) == len(resp.read())
    conn.close()


def test_many_blocked_queries_do_not_starve_other_requests(dev_cluster):
    port = dev_cluster.node("node1").port
    requests.put(f"http://127.0.0.1:{port}/v1/kv/hot", data="0")
    index = requests.get(f"http://127.0.0.1:{port}/v1/kv/hot").headers["X-Consul-Index"]
    woke: list[float] = []

    def block() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", f"/v1/kv/hot?index={index}&wait=20s")
        conn.getresponse().read()
        woke.append(time.monotonic())
        conn.close()

    threads = [threading.Thread(target=block, daemon=True) for _ in range(200)]
    for t in threads:
        t.start()
    wait_until(lambda: dev_cluster.store.waiting() >= 200, timeout=10)
    session = requests.Session()
    latencies = []
    for i in range(50):
        start = time.monotonic()
        assert session.put(f"http://127.0.0.1:{port}/v1/kv/cold/{i}", data="x").json() is True
        latencies.append(time.monotonic() - start)
    assert statistics.median(latencies) < 0.02
    assert woke == []  # unrelated writes woke none of them
    written = time.monotonic()
    session.put(f"http://127.0.0.1:{port}/v1/kv/hot", data="1")
    for t in threads:
        t.join(10)
    assert len(woke) == 200 and max(woke) - written < 3
