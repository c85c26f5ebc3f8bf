"""HTTP and TCP checks are really run by the dev agent."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import consul
import pytest
import requests

from tuggle_agent.harness import wait_until

from .helpers import Blocked

Check = consul.Check


class Endpoint:
    """A tiny health endpoint whose status code tests can change or kill."""

    def __init__(self) -> None:
        self.status = 200
        self.body = b"all good"
        self.requests: list[dict] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - stdlib naming
                endpoint.requests.append(dict(self.headers))
                self.send_response(endpoint.status)
                self.send_header("Content-Length", str(len(endpoint.body)))
                self.end_headers()
                self.wfile.write(endpoint.body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/health"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def kill(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint():
    ep = Endpoint()
    yield ep
    ep.kill()


def _status(c, check_id):
    return c.agent.checks()[check_id]["Status"]


def test_http_check_starts_critical_then_passes(c, endpoint, make_cluster):
    c.agent.service.register("web", check=Check.http(endpoint.url, "100ms"))
    check = wait_until(lambda: _status(c, "service:web") == "passing" and c.agent.checks()["service:web"])
    assert check["Output"] == f"HTTP GET {endpoint.url}: 200 OK Output: all good"
    assert check["Type"] == "http" and check["Interval"] == "100ms"
    headers = endpoint.requests[0]
    assert headers["User-Agent"] == "Consul Health Check"
    assert headers["Accept"] == "text/plain, text/*, */*"


def test_first_probe_is_staggered_and_initial_status_critical(make_cluster, endpoint):
    from tuggle_agent.devconsul import Timings

    cluster = make_cluster(nodes=1, timings=Timings.fast(check_stagger=True, check_min_interval=1.0))
    c = cluster.consul("node1")
    c.agent.service.register("web", check=Check.http(endpoint.url, "100ms"))  # raised to 1s
    assert _status(c, "service:web") == "critical"
    assert c.agent.checks()["service:web"]["Interval"] == "100ms"
    registered = time.monotonic()
    wait_until(lambda: endpoint.requests, timeout=3)
    first = time.monotonic() - registered
    wait_until(lambda: len(endpoint.requests) >= 2, timeout=3)
    assert first < 1.05  # within [0, Interval)
    assert time.monotonic() - registered >= 0.95  # the interval was raised to the 1s minimum


def test_status_mapping_429_warning_500_critical(c, endpoint):
    endpoint.status = 429
    c.agent.check.register("h", Check.http(endpoint.url, "50ms"))
    wait_until(lambda: _status(c, "h") == "warning")
    endpoint.status = 500
    wait_until(lambda: _status(c, "h") == "critical")
    assert c.agent.checks()["h"]["Output"].startswith(f"HTTP GET {endpoint.url}: 500 Internal Server Error Output:")
    endpoint.status = 204
    wait_until(lambda: _status(c, "h") == "passing")


def test_dead_endpoint_drops_service_out_of_passing(dev_cluster, c, endpoint):
    c.agent.service.register("api", check=Check.http(endpoint.url, "50ms"))
    wait_until(lambda: c.health.service("api", passing=True)[1])
    index, _ = c.health.service("api", passing=True)
    call = Blocked(dev_cluster, lambda: c.health.service("api", passing=True, index=index, wait="5s"))
    endpoint.kill()
    _, entries = call.join()
    assert entries == []  # the blocking health query woke on the status change
    assert c.agent.checks()["service:api"]["Status"] == "critical"
    output = wait_until(lambda: c.agent.checks()["service:api"]["Output"])
    wait_until(lambda: "connect: connection refused" in c.agent.checks()["service:api"]["Output"])
    assert output.startswith(f'Get "{endpoint.url}": ')


def test_http_check_timeout_is_critical(c):
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts (in the backlog) but never answers
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        c.agent.check.register("slow", Check.http(url, "1s", timeout="200ms"))
        check = wait_until(lambda: c.agent.checks()["slow"]["Output"] and c.agent.checks()["slow"], timeout=3)
        assert check["Status"] == "critical" and "Client.Timeout exceeded" in check["Output"]
    finally:
        silent.close()


def test_check_going_critical_invalidates_sessions(c, endpoint):
    c.agent.service.register("locked", check=Check.http(endpoint.url, "50ms"))
    wait_until(lambda: _status(c, "service:locked") == "passing")
    s = c.session.create(checks=["serfHealth", "service:locked"])
    c.kv.put("locked/key", "1", acquire=s)
    endpoint.status = 503
    wait_until(lambda: c.session.info(s)[1] is None)
    assert "Session" not in c.kv.get("locked/key")[1]


def test_tcp_check(c, endpoint):
    c.agent.check.register("tcp", Check.tcp("127.0.0.1", endpoint.server.server_port, "50ms"))
    check = wait_until(lambda: _status(c, "tcp") == "passing" and c.agent.checks()["tcp"])
    assert check["Output"] == f"TCP connect 127.0.0.1:{endpoint.server.server_port}: Success"


def test_output_only_changes_reach_catalog_later(make_cluster, endpoint):
    from tuggle_agent.devconsul import Timings

    cluster = make_cluster(nodes=1, timings=Timings.fast(check_update_interval=0.5))
    c = cluster.consul("node1")
    c.agent.service.register("out", check=Check.http(endpoint.url, "50ms"))
    wait_until(lambda: c.health.checks("out")[1][0]["Status"] == "passing")
    endpoint.body = b"changed"
    wait_until(lambda: c.agent.checks()["service:out"]["Output"].endswith("changed"))
    assert c.health.checks("out")[1][0]["Output"].endswith("all good")  # deferred
    wait_until(lambda: c.health.checks("out")[1][0]["Output"].endswith("changed"), timeout=3)


def test_script_checks_when_enabled(make_cluster):
    cluster = make_cluster(nodes=1, enable_script_checks=True)
    c = cluster.consul("node1")
    c.agent.check.register("ok", Check.script(["sh", "-c", "echo fine"], "50ms"))
    c.agent.check.register("warn", Check.script(["sh", "-c", "exit 1"], "50ms"))
    wait_until(lambda: _status(c, "ok") == "passing" and _status(c, "warn") == "warning")
    assert c.agent.checks()["ok"]["Output"] == "fine\n"


def test_check_stops_with_its_node(dev_cluster, endpoint):
    c2 = dev_cluster.consul("node2")
    c2.agent.check.register("n2", Check.http(endpoint.url, "50ms"))
    wait_until(lambda: _status(c2, "n2") == "passing")
    dev_cluster.stop_node("node2")
    time.sleep(0.1)
    seen = len(endpoint.requests)
    time.sleep(0.3)
    assert len(endpoint.requests) == seen
    checks = requests.get(f"http://{dev_cluster.node('node1').http_addr}/v1/health/node/node2").json()
    assert {c["CheckID"]: c["Status"] for c in checks} == {"n2": "passing", "serfHealth": "critical"}


def test_success_before_passing_and_failures_before_critical(c, endpoint, base_url):
    check = {
        "Name": "gated",
        "HTTP": endpoint.url,
        "Interval": "50ms",
        "SuccessBeforePassing": 3,
        "FailuresBeforeCritical": 3,
    }
    requests.put(f"{base_url}/v1/agent/check/register", json=check).raise_for_status()
    wait_until(lambda: _status(c, "gated") == "passing")
    assert len(endpoint.requests) >= 3
    endpoint.status = 500
    failing_from = len(endpoint.requests)
    wait_until(lambda: _status(c, "gated") == "critical")
    assert len(endpoint.requests) - failing_from >= 3


def test_deregister_critical_service_after(c, endpoint):
    c.agent.service.register("doomed", check=Check.http(endpoint.url, "50ms", deregister="300ms"))
    wait_until(lambda: _status(c, "service:doomed") == "passing")
    endpoint.status = 503
    wait_until(lambda: _status(c, "service:doomed") == "critical")
    critical = time.monotonic()
    wait_until(lambda: "doomed" not in c.agent.services(), timeout=3)
    assert time.monotonic() - critical >= 0.25
    assert c.catalog.service("doomed")[1] == []


def test_redirects_are_followed_unless_disabled(dev_cluster, base_url, c):
    root = f"http://{dev_cluster.node('node2').http_addr}/"  # the agent root redirects to /ui/
    c.agent.check.register("follow", Check.http(root, "50ms"))
    body = {"Name": "stay", "HTTP": root, "Interval": "50ms", "DisableRedirects": True}
    requests.put(f"{base_url}/v1/agent/check/register", json=body).raise_for_status()
    wait_until(lambda: _status(c, "follow") == "passing" and c.agent.checks()["stay"]["Output"])
    assert c.agent.checks()["stay"]["Output"].startswith(f"HTTP GET {root}: 301 Moved Permanently")
