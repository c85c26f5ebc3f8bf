"""Who may write and who may drive a node, as real processes: write_allow without
loopback must not cut a node off from its own watch handlers; the control endpoints
answer this host only; write_token guards writes, never reads."""

from __future__ import annotations

import http.client
import ipaddress
import os
import socket

import pytest
import requests

from tuggle_agent.harness import TuggleCluster, wait_until

DEPLOY_HOSTS = ["10.99.0.0/16"]  # write_allow as the README advises: the deploy hosts, no loopback
WRITE_TOKEN = "w-9f1c2e7a5b3d"


@pytest.fixture(scope="module", params=["script", "http"])
def deploy_hosts_cluster3(request, tmp_path_factory):
    """node1 accepts writes from loopback (the test's deploy host); node2 and node3 only
    from DEPLOY_HOSTS. Watches with `script` (handle-event) or `http` handlers."""
    with TuggleCluster(
        tmp_path_factory.mktemp(f"allow-{request.param}"),
        nodes=3,
        watches=True if request.param == "script" else "http",
        per_node={"node2": {"write_allow": DEPLOY_HOSTS}, "node3": {"write_allow": DEPLOY_HOSTS}},
    ) as c:
        yield c


def test_write_allow_without_loopback_still_lets_the_nodes_own_watches_sync_and_delete(
    deploy_hosts_cluster3, unique_name
):
    c = deploy_hosts_cluster3
    n1, n2, n3 = c.agents
    refused = n2.put(unique_name(), b"x")
    assert refused.status_code == 403 and "write_allow" in refused.text  # loopback really is outside it
    name = unique_name()
    body = os.urandom(200_000)
    assert n1.put(name + "?sync", body).status_code == 201
    for a in (n2, n3):
        wait_until(lambda a=a: a.local_file(name).exists(), 20, what=f"{a.name}'s watch to prefetch {name}")
        assert a.local_file(name).read_bytes() == body
    assert requests.delete(f"{n1.url}/{name}", timeout=10).status_code in (200, 204)
    for a in c.agents:
        wait_until(lambda a=a: not a.local_file(name).exists(), 20, what=f"{a.name}'s watch to delete {name}")
    for a in (n2, n3):
        # The script handler's own words for a refusal (a bare "403" also matched timestamps
        # and pids in its log); with http handlers the sync and delete above are the proof.
        assert "refused the watch data" not in a.handler_log(), a.handler_log()


def non_loopback_address() -> str | None:
    """An IPv4 address of this machine other than loopback (the one a route out uses)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.254", 9))  # UDP connect: picks the source address, sends nothing
        except OSError:
            return None
        addr = s.getsockname()[0]
    return None if ipaddress.ip_address(addr).is_loopback or addr == "0.0.0.0" else addr


@pytest.fixture(scope="module")
def guarded_cluster2(tmp_path_factory):
    """node1 listens on every address (bind 0.0.0.0); node2 requires a write token."""
    with TuggleCluster(
        tmp_path_factory.mktemp("guarded"),
        nodes=2,
        per_node={"node1": {"bind": "0.0.0.0"}, "node2": {"write_token": WRITE_TOKEN}},
    ) as c:
        yield c


def post_from(source: str, host: str, port: int, path: str, body: bytes = b"[]") -> tuple[int, str]:
    """POST from a chosen source address (this host's own non-loopback one)."""
    conn = http.client.HTTPConnection(host, port, timeout=10, source_address=(source, 0))
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    finally:
        conn.close()


@pytest.mark.parametrize("path", ["/_tuggle/watch", "/_tuggle/reconcile", "/_tuggle/adopt"])
def test_control_endpoints_refuse_this_hosts_non_loopback_address_on_a_wildcard_bind(guarded_cluster2, path):
    """With bind 0.0.0.0 only loopback counts as "this host" (config.is_this_host): a
    POST from the machine's own non-loopback address is refused, one from 127.0.0.1
    is served."""
    ip = non_loopback_address()
    if ip is None:
        pytest.skip("this machine has no non-loopback IPv4 address to connect from")
    n1 = guarded_cluster2[0]
    code, text = post_from(ip, ip, n1.port, path)
    assert code == 403, (code, text)
    assert f"from {ip} refused" in text and "this host" in text, text
    code, text = post_from("127.0.0.1", "127.0.0.1", n1.port, path)
    assert code == 200, (code, text)


def test_write_token_guards_put_and_delete_not_reads(guarded_cluster2, unique_name):
    n1, n2 = guarded_cluster2.agents
    name = unique_name()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": WRITE_TOKEN}):
        resp = n2.put(name, b"payload", headers=headers)
        assert resp.status_code == 403 and "write token" in resp.text, (headers, resp.status_code, resp.text)
    assert n2.get(name).status_code == 404 and not n2.local_file(name).exists()
    assert guarded_cluster2.consul().kv.get(f"tuggle/{name}")[1] is None  # nothing stored
    bearer = {"Authorization": f"Bearer {WRITE_TOKEN}"}
    assert n2.put(name, b"payload", headers=bearer).status_code == 201
    assert n2.get(name).content == b"payload"  # reads need no token
    assert n1.get(name).content == b"payload"
    assert requests.delete(f"{n2.url}/{name}", timeout=10).status_code == 403
    assert n2.local_file(name).exists()
    assert requests.delete(f"{n2.url}/{name}", headers=bearer, timeout=10).status_code in (200, 204)
    wait_until(lambda: not n2.local_file(name).exists(), 10, what=f"node2 to delete {name}")
