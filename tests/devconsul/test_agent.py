"""Agent endpoints: self, members, local services and checks, TTL updates."""

from __future__ import annotations

import consul
import pytest
import requests

from tuggle_agent.harness import wait_until

Check = consul.Check


def test_agent_self(dev_cluster):
    me = dev_cluster.consul("node2").agent.self()
    assert set(me) == {"Member", "xDS", "Stats", "Config", "Coord", "DebugConfig", "Meta"}
    assert me["Config"]["NodeName"] == "node2"
    assert me["Config"]["Datacenter"] == "dc1"
    assert me["Config"]["Version"] == "1.22.0"
    assert me["Config"]["NodeID"] == dev_cluster.node("node2").node_id
    assert me["Member"]["Name"] == "node2" and me["Member"]["Status"] == 1
    assert len(me["Coord"]["Vec"]) == 8
    assert me["Stats"]["consul"]["leader_addr"] == dev_cluster.consul("node1").status.leader()


def test_members_and_status(dev_cluster, c):
    members = c.agent.members()
    assert [m["Name"] for m in members] == ["node1", "node2", "node3"]
    assert c.agent.self()["Member"] in members
    assert all("dc1" in m["Name"] for m in c.agent.members(wan=True))
    peers = c.status.peers()
    assert len(peers) == 3 and c.status.leader() == peers[0]
    dev_cluster.stop_node("node1")
    c2 = dev_cluster.consul("node2")
    assert c2.status.leader() == peers[1]  # leadership moves to a live server
    assert [m["Status"] for m in c2.agent.members()] == [4, 1, 1]


def test_service_register_with_checks_and_deregister(c):
    c.agent.service.register(
        "web", service_id="web-1", address="10.0.0.5", port=8080, tags=["a", "b"], meta={"k": "v"},
        check=Check.ttl("10s"), extra_checks=[Check.ttl("20s")],
    )  # fmt: skip
    svc = c.agent.services()["web-1"]
    assert (svc["Service"], svc["Address"], svc["Port"], svc["Tags"], svc["Meta"]) == (
        "web", "10.0.0.5", 8080, ["a", "b"], {"k": "v"}
    )  # fmt: skip
    assert svc["Weights"] == {"Passing": 1, "Warning": 1} and svc["Datacenter"] == "dc1"
    checks = c.agent.checks()
    assert set(checks) == {"service:web-1:1", "service:web-1:2"}
    assert checks["service:web-1:1"]["Status"] == "critical"
    assert checks["service:web-1:1"]["Name"] == "Service 'web' check"
    assert checks["service:web-1:1"]["ServiceName"] == "web"
    _, nodes = c.health.service("web")
    assert [n["Service"]["ID"] for n in nodes] == ["web-1"]
    assert {ch["CheckID"] for ch in nodes[0]["Checks"]} == {"serfHealth", "service:web-1:1", "service:web-1:2"}
    assert c.agent.service.deregister("web-1") is True
    assert c.agent.services() == {} and c.agent.checks() == {}
    assert c.health.service("web")[1] == []
    assert c.agent.service.deregister("never-registered") is True


def test_single_check_gets_plain_id_and_status_can_be_preset(base_url, c):
    body = {"Name": "api", "Check": {"TTL": "5s", "Status": "passing", "Notes": "n"}}
    assert requests.put(f"{base_url}/v1/agent/service/register", json=body).status_code == 200
    check = c.agent.checks()["service:api"]
    assert (check["Status"], check["Notes"], check["Type"]) == ("passing", "n", "ttl")


def test_register_body_is_case_insensitive_with_snake_case_aliases(base_url, c):
    body = {
        "NAME": "svc", "id": "svc-1", "tagged_addresses": {"lan": {"address": "10.1.1.1", "port": 1}},
        "enable_tag_override": True,
        "checks": [{"name": "chk", "ttl": "10s", "deregister_critical_service_after": "1m", "check_id": "mine"}],
    }  # fmt: skip
    assert requests.put(f"{base_url}/v1/agent/service/register", json=body).status_code == 200
    svc = c.agent.services()["svc-1"]
    assert svc["TaggedAddresses"] == {"lan": {"Address": "10.1.1.1", "Port": 1}}
    assert svc["EnableTagOverride"] is True
    assert set(c.agent.checks()) == {"mine"}


def test_register_errors(base_url):
    assert requests.put(f"{base_url}/v1/agent/service/register", data=b"{nope").status_code == 400
    resp = requests.put(f"{base_url}/v1/agent/service/register", json={"Port": 1})
    assert (resp.status_code, resp.text) == (400, "Missing service name")
    resp = requests.put(f"{base_url}/v1/agent/check/register", json={"Name": "x", "ServiceID": "ghost", "TTL": "1s"})
    assert resp.status_code == 404 and 'ServiceID "ghost" does not exist' in resp.text
    resp = requests.put(f"{base_url}/v1/agent/check/register", json={"Name": "x", "Args": ["true"], "Interval": "1s"})
    assert resp.status_code == 400 and "Scripts are disabled" in resp.text


def test_replace_existing_checks(c):
    c.agent.service.register("r", check=Check.ttl("10s"), extra_checks=[Check.ttl("10s")])
    assert set(c.agent.checks()) == {"service:r:1", "service:r:2"}
    c.agent.service.register("r", check=Check.ttl("10s"))
    assert set(c.agent.checks()) == {"service:r", "service:r:1", "service:r:2"}  # kept by default
    c.agent.service.register("r", check=Check.ttl("10s"), replace_existing_checks=True)
    assert set(c.agent.checks()) == {"service:r"}


def test_reregistering_keeps_check_status(c):
    c.agent.service.register("keep", check=Check.ttl("10s"))
    c.agent.check.ttl_pass("service:keep", notes="ok")
    c.agent.service.register("keep", check=Check.ttl("10s"), tags=["new"])
    check = c.agent.checks()["service:keep"]
    assert (check["Status"], check["Output"]) == ("passing", "ok")


def test_ttl_check_updates_and_expiry(c, base_url):
    assert c.agent.check.register("t", Check.ttl("300ms"), notes="note") is True
    assert c.agent.checks()["t"]["Notes"] == "note"
    assert c.agent.check.ttl_warn("t", notes="meh") is True
    assert (c.agent.checks()["t"]["Status"], c.agent.checks()["t"]["Output"]) == ("warning", "meh")
    assert c.agent.check.ttl_fail("t") is True
    assert c.agent.checks()["t"]["Status"] == "critical"
    resp = requests.put(f"{base_url}/v1/agent/check/update/t", json={"Status": "passing", "Output": "fine"})
    assert resp.status_code == 200
    assert (c.agent.checks()["t"]["Status"], c.agent.checks()["t"]["Output"]) == ("passing", "fine")
    check = wait_until(lambda: c.agent.checks()["t"]["Status"] == "critical" and c.agent.checks()["t"], timeout=2)
    assert check["Output"] == "TTL expired (last output before timeout follows): fine"
    resp = requests.put(f"{base_url}/v1/agent/check/pass/unknown")
    assert resp.status_code == 404
    assert requests.put(f"{base_url}/v1/agent/check/update/t", json={"Status": "bogus"}).status_code == 400


def test_check_status_reaches_catalog(c):
    c.agent.service.register("cat", check=Check.ttl("10s"))
    assert c.health.checks("cat")[1][0]["Status"] == "critical"
    c.agent.check.ttl_pass("service:cat")
    assert c.health.checks("cat")[1][0]["Status"] == "passing"
    assert [n["Service"]["ID"] for n in c.health.service("cat", passing=True)[1]] == ["cat"]


def test_agent_health_service_by_id_and_name(c, base_url):
    c.agent.service.register("h", service_id="h1", check=Check.ttl("10s"))
    c.agent.service.register("h", service_id="h2", check=Check.ttl("10s"))
    c.agent.check.ttl_pass("service:h1")
    resp = requests.get(f"{base_url}/v1/agent/health/service/id/h1")
    assert resp.status_code == 200 and resp.json()["AggregatedStatus"] == "passing"
    assert requests.get(f"{base_url}/v1/agent/health/service/id/h2?format=text").text == "critical"
    assert requests.get(f"{base_url}/v1/agent/health/service/id/h2").status_code == 503
    assert requests.get(f"{base_url}/v1/agent/health/service/id/none").status_code == 404
    c.agent.check.ttl_warn("service:h2")
    resp = requests.get(f"{base_url}/v1/agent/health/service/name/h")
    assert resp.status_code == 429 and len(resp.json()) == 2


def test_maintenance_modes(c):
    c.agent.service.register("m", check=Check.ttl("10s"))
    c.agent.check.ttl_pass("service:m")
    c.agent.service.maintenance("m", "true", "upgrading")
    checks = c.agent.checks()
    assert checks["_service_maintenance:m"]["Notes"] == "upgrading"
    assert c.health.service("m", passing=True)[1] == []
    c.agent.service.maintenance("m", "false")
    assert "_service_maintenance:m" not in c.agent.checks()
    c.agent.maintenance("true")
    assert c.agent.checks()["_node_maintenance"]["Status"] == "critical"
    assert c.health.service("m", passing=True)[1] == []
    c.agent.maintenance("false")
    assert [e["Service"]["ID"] for e in c.health.service("m", passing=True)[1]] == ["m"]


def test_services_are_local_to_each_agent(dev_cluster):
    c1, c2 = dev_cluster.consul("node1"), dev_cluster.consul("node2")
    c1.agent.service.register("only-on-1")
    assert "only-on-1" in c1.agent.services() and c2.agent.services() == {}
    assert [e["Node"]["Node"] for e in c2.health.service("only-on-1")[1]] == ["node1"]


def test_services_filter(c):
    c.agent.service.register("f1", tags=["x"])
    c.agent.service.register("f2", tags=["y"])
    assert set(c.agent.services(filter_expr='"x" in Tags')) == {"f1"}
    with pytest.raises(consul.ConsulException):
        c.agent.services(filter_expr="broken ((")


def test_reload_and_misc_agent_calls(c):
    assert c.agent.reload() is True
    assert "Gauges" in c.agent.metrics()
    with pytest.raises(consul.exceptions.BadRequest):
        c.agent.monitor(loglevel="not-a-level")
    with pytest.raises(consul.exceptions.ACLDisabled):
        c.agent.token.set_default("secret")


@pytest.mark.parametrize(
    ("meta", "problem"),
    [
        ({"consul-x": "1"}, "reserved"),
        ({"bad key": "1"}, "invalid characters"),
        ({"k" * 129: "1"}, "Key is too long"),
        ({"k": "v" * 513}, "Value is too long"),
        ({f"k{i}": "v" for i in range(65)}, "more than 64"),
    ],
)
def test_service_meta_rules(base_url, meta, problem):
    resp = requests.put(f"{base_url}/v1/agent/service/register", json={"Name": "m", "Meta": meta})
    assert resp.status_code == 400 and problem in resp.text


def test_sidecar_service_and_connect_queries(c):
    c.agent.service.register("db", port=5432, connect={"sidecar_service": {}})
    services = c.agent.services()
    proxy = services["db-sidecar-proxy"]
    assert proxy["Kind"] == "connect-proxy" and proxy["Port"] == 21000
    assert proxy["Proxy"]["DestinationServiceName"] == "db" and proxy["Proxy"]["LocalServicePort"] == 5432
    assert [e["Service"]["ID"] for e in c.health.connect("db")[1]] == ["db-sidecar-proxy"]
    assert [r["ServiceID"] for r in c.catalog.connect("db")[1]] == ["db-sidecar-proxy"]
    c.agent.service.deregister("db")
    assert c.agent.services() == {}


def test_pretty_output(base_url):
    text = requests.get(f"{base_url}/v1/catalog/datacenters?pretty").text
    assert text == '[\n    "dc1"\n]\n'
