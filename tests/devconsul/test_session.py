"""Sessions: creation rules, TTL expiry, invalidation and lock semantics."""

from __future__ import annotations

import time

import consul
import pytest
import requests

from tuggle_agent.harness import wait_until

from .helpers import Blocked


def _create(base_url: str, body: dict | None = None) -> requests.Response:
    return (
        requests.put(f"{base_url}/v1/session/create", json=body)
        if body is not None
        else requests.put(f"{base_url}/v1/session/create")
    )


def test_create_defaults(c, base_url):
    sid = _create(base_url).json()["ID"]
    session = requests.get(f"{base_url}/v1/session/info/{sid}").json()[0]
    assert session["Node"] == "node1"
    assert session["NodeChecks"] == ["serfHealth"]
    assert session["ServiceChecks"] is None
    assert "Checks" not in session
    assert session["LockDelay"] == 15_000_000_000
    assert (session["Behavior"], session["TTL"], session["Name"]) == ("release", "", "")
    assert session["CreateIndex"] == session["ModifyIndex"] > 0


def test_session_belongs_to_the_answering_node(dev_cluster):
    sid = dev_cluster.consul("node2").session.create()
    assert dev_cluster.consul("node1").session.info(sid)[1]["Node"] == "node2"


def test_body_is_case_insensitive_and_lockdelay_accepts_numbers_and_strings(base_url):
    sid = _create(base_url, {"NAME": "n", "lockdelay": 5, "behavior": "delete", "Ttl": "2s"}).json()["ID"]
    session = requests.get(f"{base_url}/v1/session/info/{sid}").json()[0]
    assert (session["Name"], session["LockDelay"], session["Behavior"], session["TTL"]) == (
        "n", 5_000_000_000, "delete", "2s"
    )  # fmt: skip
    sid = _create(base_url, {"LockDelay": "250ms"}).json()["ID"]
    assert requests.get(f"{base_url}/v1/session/info/{sid}").json()[0]["LockDelay"] == 250_000_000
    sid = _create(base_url, {"LockDelay": 3_000_000_000, "Checks": []}).json()["ID"]
    session = requests.get(f"{base_url}/v1/session/info/{sid}").json()[0]
    assert session["LockDelay"] == 3_000_000_000 and session["NodeChecks"] is None


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"Node": "n2"}, "Missing node registration"),
        ({"TTL": "100ms"}, "Invalid Session TTL '100000000', must be between [1s=24h0m0s]"),
        ({"TTL": "25h"}, "Invalid Session TTL"),
        ({"TTL": "soon"}, "Session TTL 'soon' invalid"),
        ({"Behavior": "explode"}, "Invalid Behavior setting 'explode'"),
        ({"Checks": ["nope"]}, "Missing check 'nope' registration"),
    ],
)
def test_create_errors_are_500(base_url, body, error):
    resp = _create(base_url, body)
    assert resp.status_code == 500
    assert error in resp.text


def test_create_rejects_critical_check(c, base_url):
    c.agent.check.register("gate", consul.Check.ttl("10s"))  # starts critical
    resp = _create(base_url, {"Checks": ["serfHealth", "gate"]})
    assert (resp.status_code, resp.text) == (500, "Check 'gate' is in critical state")


def test_py_consul_error_mapping(c):
    with pytest.raises(consul.ConsulException):
        c.session.create(node="n2")
    with pytest.raises(consul.ConsulException, match="No path to datacenter"):
        c.session.create(dc="dc2")
    with pytest.raises(consul.ConsulException):
        c.kv.put("foo", "bar", acquire="foo")  # invalid session -> 500
    assert c.session.info("1" * 36)[1] is None
    with pytest.raises(consul.NotFound):
        c.session.renew("1" * 36)
    assert c.session.destroy("1" * 36) is True
    assert c.session.list()[1] == [] and c.session.node("node1")[1] == []


def test_list_node_and_renew(dev_cluster, c):
    s1 = c.session.create("one", ttl=10)
    s2 = dev_cluster.consul("node2").session.create("two")
    assert sorted(s["Name"] for s in c.session.list()[1]) == ["one", "two"]
    assert [s["ID"] for s in c.session.node("node2")[1]] == [s2]
    renewed = c.session.renew(s1)
    assert renewed["ID"] == s1 and renewed["TTL"] == "10s"


def test_ttl_expiry_after_twice_the_ttl_and_renew_resets_it(dev_cluster, c, base_url):
    expiring = _create(base_url, {"TTL": "1s", "Behavior": "delete", "LockDelay": "0s"}).json()["ID"]
    renewed = _create(base_url, {"TTL": "1s"}).json()["ID"]
    assert c.kv.put("ttl/key", "v", acquire=expiring)
    created = time.monotonic()
    time.sleep(1.2)  # past the TTL, before 2 x TTL: nothing may have happened yet
    c.session.renew(renewed)
    assert c.session.info(expiring)[1] is not None
    wait_until(lambda: c.session.info(expiring)[1] is None, timeout=3)
    assert time.monotonic() - created >= 1.9
    assert c.kv.get("ttl/key")[1] is None  # behavior=delete
    assert c.session.info(renewed)[1] is not None  # 2.x s after create, 1 s after renew


def test_release_behavior_keeps_value_and_applies_lock_delay(c):
    s1 = c.session.create(lock_delay=1)
    s2 = c.session.create(lock_delay=0)
    assert c.kv.put("lk", "held", acquire=s1) is True
    before = c.kv.get("lk")[1]
    c.session.destroy(s1)
    after = c.kv.get("lk")[1]
    assert "Session" not in after and after["Value"] == b"held"
    assert after["ModifyIndex"] > before["ModifyIndex"] and after["LockIndex"] == 1
    assert c.kv.put("lk", "mine", acquire=s2) is False  # lock-delay
    released = time.monotonic()
    wait_until(lambda: c.kv.put("lk", "mine", acquire=s2), timeout=3)
    assert time.monotonic() - released > 0.8


def test_lock_delay_is_capped_by_timings(c):
    s1 = c.session.create()  # default 15s lock-delay, capped at 2s by Timings.fast()
    s2 = c.session.create()
    c.kv.put("capped", "x", acquire=s1)
    c.session.destroy(s1)
    wait_until(lambda: c.kv.put("capped", "y", acquire=s2), timeout=4)


def test_delete_behavior_removes_keys(c):
    s = c.session.create(behavior="delete", ttl=20)
    assert c.kv.put("del/me", "1", acquire=s) is True
    c.session.destroy(s)
    assert c.kv.get("del/me")[1] is None


def test_lock_rules(c, base_url):
    s1, s2 = c.session.create(), c.session.create()
    assert c.kv.put("l", "1", acquire=s1) is True
    assert c.kv.put("l", "2", acquire=s1) is True  # same holder: value updated
    entry = c.kv.get("l")[1]
    assert (entry["Value"], entry["LockIndex"], entry["Session"]) == (b"2", 1, s1)
    assert c.kv.put("l", "x", acquire=s2) is False
    assert c.kv.put("l", "plain") is True  # plain PUT keeps the lock
    assert c.kv.get("l")[1]["Session"] == s1
    assert c.kv.put("l", "x", release=s2) is False
    assert c.kv.put("l", "x", release="not-a-session") is False
    assert c.kv.put("l", "", release=s1) is True  # release replaces the value
    entry = c.kv.get("l")[1]
    assert "Session" not in entry and entry["Value"] is None and entry["LockIndex"] == 1
    assert c.kv.put("l", "x", acquire=s2) is True  # ?release sets no lock-delay
    assert c.kv.get("l")[1]["LockIndex"] == 2
    assert c.kv.put("new", "x", acquire=s2) and c.kv.get("new")[1]["LockIndex"] == 1
    assert c.kv.put("missing", "x", release=s1) is False
    resp = requests.put(f"{base_url}/v1/kv/l?acquire=")
    assert (resp.status_code, resp.text) == (500, "missing session")
    resp = requests.put(f"{base_url}/v1/kv/l?acquire=bogus")
    assert (resp.status_code, resp.text) == (500, 'invalid session "bogus"')


def test_stopping_a_node_invalidates_its_sessions(dev_cluster):
    c1, c2 = dev_cluster.consul("node1"), dev_cluster.consul("node2")
    s2 = c2.session.create(lock_delay=0)
    s1 = c1.session.create()
    c1.kv.put("n2lock", "v", acquire=s2)
    dev_cluster.stop_node("node2")
    assert c1.session.info(s2)[1] is None
    assert "Session" not in c1.kv.get("n2lock")[1]
    assert c1.session.info(s1)[1] is not None


def test_critical_session_check_invalidates(c):
    c.agent.service.register("web", check=consul.Check.ttl("10s"))
    c.agent.check.ttl_pass("service:web")
    s = c.session.create(checks=["serfHealth", "service:web"])
    c.kv.put("web/lock", "1", acquire=s)
    c.agent.check.ttl_fail("service:web")
    assert c.session.info(s)[1] is None
    assert "Session" not in c.kv.get("web/lock")[1]


def test_removing_a_session_check_invalidates(c):
    c.agent.check.register("aux", consul.Check.ttl("10s"))
    c.agent.check.ttl_pass("aux")
    s = c.session.create(checks=["aux"])
    c.agent.check.deregister("aux")
    assert c.session.info(s)[1] is None


def test_blocking_session_info_wakes_on_destroy(dev_cluster, c):
    s = c.session.create()
    index, _ = c.session.info(s)
    call = Blocked(dev_cluster, lambda: c.session.info(s, index=index, wait="5s"))
    c.session.destroy(s)
    new_index, session = call.join()
    assert session is None and int(new_index) > int(index)


def test_blocking_session_info_sleeps_through_other_sessions(dev_cluster, c):
    """As Consul's SessionGet, which watches that session's row only: other sessions
    created and destroyed meanwhile do not wake the query (a node watching its own
    session would otherwise wake on every fetch session in the cluster)."""
    s = c.session.create()
    index, _ = c.session.info(s)
    call = Blocked(dev_cluster, lambda: c.session.info(s, index=index, wait="5s"))
    for _ in range(3):
        c.session.destroy(c.session.create())
    c.session.destroy(s)
    _, session = call.join()
    assert session is None, "woke on another session's change, before its own ended"
