"""Health, catalog and coordinate endpoints, ?near sorting, node failures."""

from __future__ import annotations

import time

import consul
import pytest
import requests

from tuggle_agent.devconsul.state.coordinates import distance

from .helpers import Blocked

Check = consul.Check


def _ids(entries):
    return [e["Service"]["ID"] for e in entries]


def _nodes(entries):
    return [e["Node"]["Node"] for e in entries]


def _register_everywhere(cluster, name="svc", passing=True):
    for agent in cluster.nodes:
        c = cluster.consul(agent.name)
        c.agent.service.register(name, check=Check.ttl("30s"))
        if passing:
            c.agent.check.ttl_pass(f"service:{name}")


def test_health_service_shape_and_tag_and(c, base_url):
    c.agent.service.register("t", service_id="t1", tags=["a", "b"], port=1)
    c.agent.service.register("t", service_id="t2", tags=["a"], port=2)
    entry = requests.get(f"{base_url}/v1/health/service/t").json()[0]
    assert set(entry) == {"Node", "Service", "Checks"}
    assert entry["Node"]["Node"] == "node1" and entry["Node"]["Datacenter"] == "dc1"
    assert entry["Service"]["Tags"] == ["a", "b"] and entry["Service"]["Port"] == 1
    assert [ch["CheckID"] for ch in entry["Checks"]] == ["serfHealth"]
    assert _ids(c.health.service("t", tag="a")[1]) == ["t1", "t2"]
    assert _ids(c.health.service("t", tag=["a", "b"])[1]) == ["t1"]
    assert c.health.service("t", tag=["a", "c"])[1] == []
    assert c.health.service("nothing")[1] == []


def test_passing_parameter_parsebool(c, base_url):
    c.agent.service.register("p", check=Check.ttl("10s"))
    url = f"{base_url}/v1/health/service/p"
    assert requests.get(url + "?passing").json() == []
    assert requests.get(url + "?passing=1").json() == []
    assert requests.get(url + "?passing=true").json() == []
    assert len(requests.get(url + "?passing=false").json()) == 1
    assert len(requests.get(url + "?passing=0").json()) == 1
    resp = requests.get(url + "?passing=maybe")
    assert (resp.status_code, resp.text) == (400, "Invalid value for ?passing")


def test_warning_check_excludes_from_passing(c):
    c.agent.service.register("w", check=Check.ttl("10s"))
    c.agent.check.ttl_warn("service:w")
    assert c.health.service("w", passing=True)[1] == []


def test_near_agent_sorts_same_zone_first(make_cluster):
    cluster = make_cluster(nodes=4, zones=2)  # round-robin: node1,node3 | node2,node4
    assert [a.zone for a in cluster.nodes] == [0, 1, 0, 1]
    _register_everywhere(cluster)
    c2 = cluster.consul("node2")
    order = _nodes(c2.health.service("svc", near="_agent")[1])
    assert order[:2] == ["node2", "node4"] and set(order[2:]) == {"node1", "node3"}
    coords = {e["Node"]: e["Coord"] for e in c2.coordinate.nodes()[1]}
    assert distance(coords["node2"], coords["node4"]) < 0.001
    assert distance(coords["node2"], coords["node1"]) > 0.015
    assert _nodes(c2.health.service("svc", near="node1")[1])[:2] == ["node1", "node3"]
    assert _nodes(c2.health.service("svc")[1]) == ["node1", "node2", "node3", "node4"]
    assert [n["Node"] for n in c2.catalog.nodes(near="_agent")[1]][:2] == ["node2", "node4"]
    assert [n["Node"] for n in c2.catalog.service("svc", near="_agent")[1]][:2] == ["node2", "node4"]


def test_near_puts_unknown_coordinates_last_and_is_stable(make_cluster):
    cluster = make_cluster(nodes=3)
    _register_everywhere(cluster)
    c = cluster.consul("node1")
    assert c.catalog.register("ext", "10.0.0.9", service={"service": "svc"}) is True  # no coordinate
    same = [0.01, 0, 0, 0, 0, 0, 0, 0]
    cluster.set_coordinate("node1", [0.0] * 8)
    cluster.set_coordinate("node3", same)
    cluster.set_coordinate("node2", same)
    assert _nodes(c.health.service("svc", near="_agent")[1]) == ["node1", "node2", "node3", "ext"]
    # No coordinate for the source node: no sorting at all.
    assert _nodes(c.health.service("svc", near="ext")[1]) == ["ext", "node1", "node2", "node3"]


def test_passing_filter_does_not_preserve_near_order(make_cluster):
    cluster = make_cluster(nodes=4, zones=2)
    _register_everywhere(cluster)
    c2 = cluster.consul("node2")
    near = _nodes(c2.health.service("svc", near="_agent")[1])
    assert near[:2] == ["node2", "node4"]
    c2.agent.check.ttl_fail("service:svc")
    # Consul swaps a failing entry with the last one: the farthest node jumps to the front.
    assert _nodes(c2.health.service("svc", near="_agent", passing=True)[1]) == [near[3], near[1], near[2]]


def test_stopped_node_leaves_passing_and_restart_forgets_local_services(dev_cluster):
    _register_everywhere(dev_cluster)
    c1 = dev_cluster.consul("node1")
    dev_cluster.stop_node("node2")
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://{dev_cluster.node('node2').http_addr}/v1/agent/self", timeout=2)
    assert _nodes(c1.health.service("svc", passing=True)[1]) == ["node1", "node3"]
    assert _nodes(c1.health.service("svc")[1]) == ["node1", "node2", "node3"]  # still in the catalog
    serf = next(ch for ch in c1.health.node("node2")[1] if ch["CheckID"] == "serfHealth")
    assert (serf["Status"], serf["Output"]) == ("critical", "Agent not live or unreachable")
    dev_cluster.restart_node("node2")
    c2 = dev_cluster.consul("node2")
    assert c2.agent.self()["Config"]["NodeName"] == "node2"
    assert c2.agent.services() == {}
    assert _nodes(c1.health.service("svc")[1]) == ["node1", "node3"]
    serf = next(ch for ch in c1.health.node("node2")[1] if ch["CheckID"] == "serfHealth")
    assert serf["Status"] == "passing"


def test_kill_node_has_the_same_visible_effect(dev_cluster):
    _register_everywhere(dev_cluster)
    dev_cluster.kill_node("node3")
    assert _nodes(dev_cluster.consul("node1").health.service("svc", passing=True)[1]) == ["node1", "node2"]


def test_health_state_and_checks(c):
    assert [ch["CheckID"] for ch in c.health.state("any")[1]] == ["serfHealth"] * 3
    c.agent.service.register("s", service_id="s1", check=Check.ttl("10s"))
    assert [ch["CheckID"] for ch in c.health.state("critical")[1]] == ["service:s1"]
    assert [ch["ServiceID"] for ch in c.health.checks("s")[1]] == ["s1"]
    c.agent.check.ttl_pass("service:s1")
    assert {ch["ServiceID"] for ch in c.health.state("passing")[1]} == {"", "s1"}
    base_url = f"http://{c.http.host}:{c.http.port}"
    assert requests.get(f"{base_url}/v1/health/state/bogus").status_code == 400


def test_health_blocking_wakes_only_for_its_service(dev_cluster, c):
    c.agent.service.register("a", service_id="a1")
    index, _ = c.health.service("a")
    call = Blocked(dev_cluster, lambda: c.health.service("a", index=index, wait="5s"))
    c.agent.service.register("b")
    c.kv.put("k", "v")
    time.sleep(0.2)
    assert not call.done
    dev_cluster.consul("node2").agent.service.register("a", service_id="a2")
    _, entries = call.join()
    assert _ids(entries) == ["a1", "a2"]


def test_catalog_endpoints(dev_cluster, c):
    c.agent.service.register("web", tags=["v1"], port=80)
    dev_cluster.consul("node2").agent.service.register("web", tags=["v2"], port=81)
    assert c.catalog.datacenters() == ["dc1"]
    assert [n["Node"] for n in c.catalog.nodes()[1]] == ["node1", "node2", "node3"]
    assert c.catalog.services()[1] == {"consul": [], "web": ["v1", "v2"]}
    rows = c.catalog.service("web")[1]
    assert [(r["Node"], r["ServicePort"], r["ServiceTags"]) for r in rows] == [
        ("node1", 80, ["v1"]),
        ("node2", 81, ["v2"]),
    ]
    assert [r["Node"] for r in c.catalog.service("web", tag="v2")[1]] == ["node2"]
    node = c.catalog.node("node1")[1]
    assert set(node["Services"]) == {"consul", "web"} and node["Node"]["Node"] == "node1"
    assert c.catalog.node("nope")[1] is None
    with pytest.raises(consul.ConsulException, match="No path to datacenter"):
        c.catalog.nodes(dc="dc2")


def test_catalog_register_and_deregister(c):
    assert c.catalog.register("n1", "10.1.10.11", service={"service": "s1"}, check={"name": "c1"}) is True
    assert c.catalog.register("n2", "10.1.10.12", service={"service": "s1", "tags": ["master"]}) is True
    assert {r["Node"] for r in c.catalog.service("s1")[1]} == {"n1", "n2"}
    assert c.health.node("n1")[1][0]["Status"] == "critical"
    assert c.catalog.deregister("n2", service_id="s1") is True
    assert {r["Node"] for r in c.catalog.service("s1")[1]} == {"n1"}
    assert c.catalog.deregister("n1") is True
    assert [n["Node"] for n in c.catalog.nodes()[1]] == ["n2", "node1", "node2", "node3"]


def test_coordinates(dev_cluster, c):
    rows = c.coordinate.nodes()[1]
    assert [r["Node"] for r in rows] == ["node1", "node2", "node3"]
    assert set(rows[0]) == {"Node", "Segment", "Coord"}
    assert set(rows[0]["Coord"]) == {"Vec", "Error", "Adjustment", "Height"}
    dev_cluster.set_coordinate("node2", [0.5] + [0.0] * 7, height=0.001, adjustment=-0.0005, error=0.2)
    coord = c.coordinate.node("node2")[1][0]["Coord"]
    assert coord == {"Vec": [0.5] + [0.0] * 7, "Error": 0.2, "Adjustment": -0.0005, "Height": 0.001}
    assert c.coordinate.update("node3", {"Adjustment": 0, "Error": 1.5, "Height": 0, "Vec": [0.0] * 8}) is True
    assert c.coordinate.node("node3")[1][0]["Coord"]["Height"] == 0
    assert c.coordinate.datacenters()[0]["Datacenter"] == "dc1"


def test_distance_matches_serf():
    a = {"Vec": [0.003] + [0.0] * 7, "Height": 0.001, "Adjustment": 0.0, "Error": 1.5}
    b = {"Vec": [0.0] + [0.004] + [0.0] * 6, "Height": 0.002, "Adjustment": -0.01, "Error": 1.5}
    assert distance(a, b) == pytest.approx(0.005 + 0.003)  # negative adjustment ignored when it would go <= 0
    assert distance(a, None) == float("inf")


def test_reset_gives_a_fresh_cluster(dev_cluster, c):
    c.kv.put("k", "v")
    s = c.session.create()
    c.agent.service.register("x")
    c.event.fire("e")
    c.catalog.register("ext", "10.0.0.1")
    dev_cluster.reset()
    assert c.kv.get("", recurse=True)[1] is None
    assert c.session.info(s)[1] is None
    assert c.agent.services() == {} and c.catalog.services()[1] == {"consul": []}
    assert c.event.list()[1] == []
    assert [n["Node"] for n in c.catalog.nodes()[1]] == ["node1", "node2", "node3"]
