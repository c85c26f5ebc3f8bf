"""User events: fire, filtered delivery, per-node buffers, list blocking."""

from __future__ import annotations

import base64
import time

import consul
import pytest
import requests

from tuggle_agent.devconsul.codec import uuid_to_uint64

from .helpers import Blocked


def _names(client, name=None):
    return [e["Name"] for e in client.event.list(name=name)[1]]


def test_fire_response_and_list(dev_cluster, c, base_url):
    resp = requests.put(f"{base_url}/v1/event/fire/deploy", data=b"v1")
    fired = resp.json()
    assert list(fired) == ["ID", "Name", "Payload", "NodeFilter", "ServiceFilter", "TagFilter", "Version", "LTime"]
    assert (fired["Name"], fired["Payload"], fired["Version"], fired["LTime"]) == (
        "deploy", base64.b64encode(b"v1").decode(), 1, 0
    )  # fmt: skip
    for agent in dev_cluster.nodes:
        index, events = dev_cluster.consul(agent.name).event.list()
        assert [e["ID"] for e in events] == [fired["ID"]]
        assert events[0]["Payload"] == b"v1" and events[0]["LTime"] > 0
        assert int(index) == uuid_to_uint64(fired["ID"])
    assert requests.put(f"{base_url}/v1/event/fire/empty").json()["Payload"] is None


def test_list_headers_and_empty_list(base_url):
    resp = requests.get(f"{base_url}/v1/event/list")
    assert resp.json() == [] and resp.headers["X-Consul-Index"] == "1"
    assert "X-Consul-KnownLeader" not in resp.headers and "X-Consul-LastContact" not in resp.headers


def test_name_filter_and_arrival_order_with_lamport_times(c):
    for name in ("a", "b", "a"):
        c.event.fire(name)
    _, events = c.event.list()
    assert [e["Name"] for e in events] == ["a", "b", "a"]
    assert [e["LTime"] for e in events] == sorted(e["LTime"] for e in events)
    index, only_a = c.event.list(name="a")
    assert [e["Name"] for e in only_a] == ["a", "a"]
    assert int(index) == uuid_to_uint64(only_a[-1]["ID"])
    assert c.event.list(name="zzz")[1] == []


def test_node_filter_reaches_only_matching_nodes(dev_cluster, c):
    c.event.fire("targeted", node="^node[23]$")
    assert _names(c) == []
    assert _names(dev_cluster.consul("node2")) == ["targeted"]
    assert _names(dev_cluster.consul("node3")) == ["targeted"]


def test_service_and_tag_filters_use_local_services_at_receipt(dev_cluster, c):
    c2, c3 = dev_cluster.consul("node2"), dev_cluster.consul("node3")
    c2.agent.service.register("cache", tags=["primary"])
    c3.agent.service.register("cache", tags=["replica"])
    c.event.fire("flush", service="cache")
    c.event.fire("promote", service="cache", tag="^primary$")
    assert _names(c) == []
    assert _names(c2) == ["flush", "promote"]
    assert _names(c3) == ["flush"]
    c.agent.service.register("cache")  # registered after the fire: nothing retroactive
    assert _names(c) == []


def test_fire_validation_errors(c, base_url):
    resp = requests.put(f"{base_url}/v1/event/fire/x?tag=a")
    assert (resp.status_code, resp.text) == (500, "Cannot provide tag filter without service filter")
    resp = requests.put(f"{base_url}/v1/event/fire/x?node=(")
    assert resp.status_code == 500 and resp.text.startswith("Invalid node filter:")
    assert requests.put(f"{base_url}/v1/event/fire/").status_code == 400
    resp = requests.put(f"{base_url}/v1/event/fire/big", data=b"x" * 101)
    assert resp.status_code == 413
    assert requests.put(f"{base_url}/v1/event/fire/ok", data=b"x" * 100).status_code == 200
    resp = requests.put(f"{base_url}/v1/event/fire/{'n' * 300}?node={'.' * 200}", data=b"x" * 50)
    assert (resp.status_code, resp.text) == (500, "user event exceeds limit of 512 bytes")
    with pytest.raises(consul.ConsulException, match="No path to datacenter"):
        c.event.fire("x", dc="dc2")
    assert c.event.fire("x", dc="dc1")


def test_underscore_names_and_rexec(c):
    c.event.fire("_private")
    c.event.fire("_rexec")
    assert _names(c) == ["_private"]


def test_ring_buffer_keeps_last_256_across_names(c):
    for i in range(260):
        c.event.fire("many" if i % 2 else "other", str(i))
    _, events = c.event.list()
    assert len(events) == 256
    assert events[0]["Payload"] == b"4" and events[-1]["Payload"] == b"259"


def test_blocking_list_waits_for_a_new_event_of_its_name(dev_cluster, c):
    c.event.fire("x")
    index, _ = c.event.list(name="x")
    call = Blocked(dev_cluster, lambda: c.event.list(name="x", index=index, wait="5s"))
    c.event.fire("y")  # another name: re-checked, keeps waiting
    time.sleep(0.2)
    assert not call.done
    c.event.fire("x", "second")
    new_index, events = call.join()
    assert new_index != index and events[-1]["Payload"] == b"second"


def test_blocking_list_without_wait_uses_event_list_max_wait(make_cluster):
    from tuggle_agent.devconsul import Timings

    cluster = make_cluster(nodes=1, timings=Timings.fast(event_list_max_wait=0.3))
    url = f"http://{cluster.node('node1').http_addr}/v1/event/list"
    start = time.monotonic()
    resp = requests.get(url, params={"index": "1"})
    assert resp.json() == [] and 0.25 < time.monotonic() - start < 2
    start = time.monotonic()
    requests.get(url, params={"index": "1", "wait": "10m"})  # clamped to the maximum
    assert time.monotonic() - start < 2


def test_non_matching_index_returns_at_once(c):
    c.event.fire("x")
    start = time.monotonic()
    c.event.list(index="12345", wait="5s")
    assert time.monotonic() - start < 1


def test_stopped_node_misses_events_and_restart_clears_buffer(dev_cluster, c):
    c.event.fire("before")
    dev_cluster.stop_node("node2")
    c.event.fire("while-down")
    dev_cluster.restart_node("node2")
    assert _names(dev_cluster.consul("node2")) == []
    assert _names(dev_cluster.consul("node3")) == ["before", "while-down"]
