"""ACLs (default deny) through py-consul, the way a product under test meets
them on a Consul agent with `acl { enabled = true, default_policy = "deny" }`."""

from __future__ import annotations

import os
import signal
import subprocess

import consul
import pytest
import requests
from click.testing import CliRunner

from tuggle_agent.devconsul.cli import devconsul_command
from tuggle_agent.harness import free_port_range

from .helpers import BIN, Recorder, readline, write_config

MASTER = "6a1f3c2e-0d4b-4f5a-9e8d-7c6b5a4f3e2d"
ANONYMOUS_ID = "00000000-0000-0000-0000-000000000002"
GLOBAL_MANAGEMENT_ID = "00000000-0000-0000-0000-000000000001"
# What a tuggle agent on node1 needs, and nothing more.
LEAST_PRIVILEGE = {
    "key_prefix": {"tuggle": {"policy": "write"}},
    "service": {"tuggle": {"policy": "write"}},
    "session": {"node1": {"policy": "write"}},
    "event": {"tuggle": {"policy": "write"}},
    "node_prefix": {"": {"policy": "read"}},
}


@pytest.fixture
def acl_cluster(make_cluster):
    return make_cluster(nodes=2, acl=True, acl_master_token=MASTER)


@pytest.fixture
def master(acl_cluster):
    return acl_cluster.consul("node1", token=MASTER)


def make_token(master: consul.Consul, rules: dict, name: str = "tuggle") -> str:
    """SecretID of a new token holding one new policy with `rules`."""
    policy = master.acl.policy.create(name, rules=rules)
    return master.acl.token.create(policies_id=[policy["ID"]], description=name)["SecretID"]


def raw(cluster, method: str, path: str, token: str | None = None, **kwargs) -> requests.Response:
    headers = {"X-Consul-Token": token} if token else {}
    return requests.request(
        method, f"http://{cluster.node('node1').http_addr}{path}", headers=headers, timeout=5, **kwargs
    )


def denied(call, *args, **kwargs) -> str:
    with pytest.raises(consul.ACLPermissionDenied) as err:
        call(*args, **kwargs)
    return str(err.value)


def test_least_privilege_token_does_a_typical_agent_flow(acl_cluster, master):
    token = make_token(master, LEAST_PRIVILEGE)
    c = acl_cluster.consul("node1", token=token)
    assert c.kv.put("tuggle/objects/a", b"meta")
    assert c.kv.put("tuggle/objects/a", b"meta2", cas=c.kv.get("tuggle/objects/a")[1]["ModifyIndex"])
    assert [e["Key"] for e in c.kv.get("tuggle/", recurse=True)[1]] == ["tuggle/objects/a"]
    assert c.kv.get("tuggle/", keys=True, separator="/")[1] == ["tuggle/objects/"]
    session = c.session.create(ttl=10, behavior="delete")  # on node1, the agent's node
    assert c.kv.put("tuggle/sem/holder", b"", acquire=session)
    assert c.kv.put("tuggle/sem/holder", b"", release=session)
    assert c.session.renew(session)["ID"] == session
    assert [s["ID"] for s in c.session.list()[1]] == [session]
    assert c.agent.service.register("tuggle", service_id="tuggle-1", port=8900, check=consul.Check.ttl("10s"))
    c.agent.check.ttl_pass("service:tuggle-1")
    assert [e["Service"]["ID"] for e in c.health.service("tuggle")[1]] == ["tuggle-1"]
    assert c.event.fire("tuggle", "manifest-42")["Name"] == "tuggle"
    assert [e["Name"] for e in raw(acl_cluster, "GET", "/v1/event/list?name=tuggle", token).json()] == ["tuggle"]
    assert [n["Node"] for n in raw(acl_cluster, "GET", "/v1/coordinate/nodes", token).json()] == ["node1", "node2"]
    assert c.session.destroy(session)
    assert c.kv.delete("tuggle/", recurse=True)
    assert c.agent.service.deregister("tuggle-1")


def test_hidden_prefix_reads_as_404_but_its_keys_are_403(acl_cluster, master):
    master.kv.put("secret/a", b"1")
    master.kv.put("tuggle/a", b"2")
    c = acl_cluster.consul("node1", token=make_token(master, {"key_prefix": {"tuggle": {"policy": "write"}}}))
    index, entries = c.kv.get("secret/", recurse=True)
    assert entries is None and int(index) >= 1  # looks exactly like an empty prefix: a product must not trust "empty"
    assert c.kv.get("secret/", keys=True)[1] is None
    message = denied(c.kv.get, "secret/a")
    assert message.startswith("Permission denied: token with AccessorID '") and message.endswith(
        "' lacks permission 'key:read' on \"secret/a\""
    )
    assert "lacks permission 'key:read' on \"secret/missing\"" in denied(
        c.kv.get, "secret/missing"
    )  # existence leaks nothing
    assert "lacks permission 'key:write' on \"secret/a\"" in denied(c.kv.put, "secret/a", b"x")
    assert "'key:write' on \"secret/a\"" in denied(c.kv.delete, "secret/a")
    assert [e["Key"] for e in c.kv.get("", recurse=True)[1]] == ["tuggle/a"]  # the rest is filtered out


def test_recursive_delete_needs_write_on_everything_under_the_prefix(acl_cluster, master):
    rules = {"key_prefix": {"tuggle/": {"policy": "write"}, "tuggle/ro/": {"policy": "read"}}}
    c = acl_cluster.consul("node1", token=make_token(master, rules))
    assert "'key:write' on \"tuggle/\"" in denied(c.kv.delete, "tuggle/", recurse=True)
    assert c.kv.delete("tuggle/rw/", recurse=True)
    assert c.kv.delete("tuggle/rw/x")


def test_results_filtered_header_only_for_callers_with_a_token(acl_cluster, master):
    master.kv.put("secret/a", b"1")
    master.kv.put("tuggle/a", b"2")
    token = make_token(master, {"key_prefix": {"tuggle": {"policy": "read"}}})
    resp = raw(acl_cluster, "GET", "/v1/kv/?recurse", token)
    assert resp.status_code == 200 and resp.headers["X-Consul-Results-Filtered-By-ACLs"] == "true"
    resp = raw(acl_cluster, "GET", "/v1/kv/tuggle/?recurse", token)
    assert "X-Consul-Results-Filtered-By-ACLs" not in resp.headers  # nothing was hidden
    resp = raw(acl_cluster, "GET", "/v1/kv/?recurse")  # anonymous: everything hidden, nothing said
    assert resp.status_code == 404 and "X-Consul-Results-Filtered-By-ACLs" not in resp.headers
    assert resp.headers["X-Consul-Default-Acl-Policy"] == "deny"


def test_catalog_and_health_leave_out_what_the_token_may_not_read(acl_cluster, master):
    master.agent.service.register("tuggle", port=1)
    master.agent.service.register("secret", port=2)
    token = make_token(master, {"service": {"tuggle": {"policy": "read"}}, "node": {"node1": {"policy": "read"}}})
    c = acl_cluster.consul("node1", token=token)
    assert [e["Service"]["Service"] for e in c.health.service("tuggle")[1]] == ["tuggle"]
    assert c.health.service("secret")[1] == []
    assert set(c.catalog.services()[1]) == {"tuggle"}  # "consul" and "secret" are hidden
    assert [n["Node"] for n in c.catalog.nodes()[1]] == ["node1"]
    resp = raw(acl_cluster, "GET", "/v1/health/service/secret", token)
    assert resp.json() == [] and resp.headers["X-Consul-Results-Filtered-By-ACLs"] == "true"
    no_node_read = make_token(master, {"service": {"tuggle": {"policy": "read"}}}, "svc-only")
    assert acl_cluster.consul("node1", token=no_node_read).health.service("tuggle")[1] == []  # node:read is needed too


def test_anonymous_is_denied_until_the_anonymous_token_gets_a_policy(acl_cluster, master):
    anonymous = acl_cluster.consul("node1")
    message = denied(anonymous.kv.get, "public/a")
    assert message == (
        "Permission denied: anonymous token lacks permission 'key:read' on \"public/a\". "
        "The anonymous token is used implicitly when a request does not specify a token."
    )
    denied(anonymous.kv.put, "public/a", b"x")
    denied(anonymous.session.create)
    policy = master.acl.policy.create("public-read", rules={"key_prefix": {"public/": {"policy": "read"}}})
    master.acl.token.update(ANONYMOUS_ID, policies_id=[policy["ID"]], description="Anonymous Token")
    master.kv.put("public/a", b"hello")
    assert anonymous.kv.get("public/a")[1]["Value"] == b"hello"
    denied(anonymous.kv.put, "public/a", b"x")


def test_unknown_token_is_acl_not_found(acl_cluster):
    c = acl_cluster.consul("node1", token="c0ffee00-0000-4000-8000-000000000000")
    assert denied(c.kv.get, "tuggle/a") == "ACL not found"
    assert denied(c.catalog.services) == "ACL not found"
    assert acl_cluster.consul("node1", token="nope").status.leader()  # endpoints without ACLs still answer


def test_events_need_event_write_to_fire_and_event_read_to_list(acl_cluster, master):
    master.event.fire("other", "x")
    c = acl_cluster.consul("node1", token=make_token(master, {"event_prefix": {"tuggle": {"policy": "write"}}}))
    assert denied(c.event.fire, "other", "y") == "Permission denied"  # Consul's EventFire hides the detail
    c.event.fire("tuggle-sync", "z")
    resp = raw(acl_cluster, "GET", "/v1/event/list", c.token)
    assert [e["Name"] for e in resp.json()] == ["tuggle-sync"]
    assert resp.headers["X-Consul-Results-Filtered-By-ACLs"] == "true"
    assert [e["Name"] for e in raw(acl_cluster, "GET", "/v1/event/list", MASTER).json()] == ["other", "tuggle-sync"]


def test_py_consul_reads_that_send_no_token_act_as_anonymous(acl_cluster, master):
    # py-consul 1.8.0 adds no X-Consul-Token to event.list, coordinate.nodes,
    # agent.self and agent.members, even on a client built with a token: under
    # default deny a product using them sees nothing (or 403), as on real Consul.
    c = acl_cluster.consul("node1", token=MASTER)
    c.event.fire("tuggle", "x")
    assert c.event.list(name="tuggle")[1] == []
    assert c.coordinate.nodes()[1] == []
    assert c.agent.members() == []
    denied(c.agent.self)


def test_sessions_need_session_write_on_their_node(acl_cluster, master):
    c = acl_cluster.consul("node1", token=make_token(master, {"session": {"node1": {"policy": "write"}}}))
    assert "lacks permission 'session:write' on \"node2\"" in denied(c.session.create, node="node2")
    other = master.session.create(node="node2")
    mine = c.session.create()
    assert [s["ID"] for s in c.session.list()[1]] == [mine]  # node2's session is hidden
    denied(c.session.destroy, other)
    # Acquiring needs key:write only (the session:write was needed to create the session).
    writer = acl_cluster.consul("node1", token=make_token(master, {"key_prefix": {"lock/": {"policy": "write"}}}, "kw"))
    assert writer.kv.put("lock/a", b"", acquire=mine)
    denied(c.kv.put, "lock/b", b"", acquire=mine)


def test_agent_endpoints_need_agent_service_and_node_rights(acl_cluster, master):
    rules = {"agent": {"node1": {"policy": "read"}}, "service_prefix": {"web": {"policy": "write"}}}
    c = acl_cluster.consul("node1", token=make_token(master, rules))
    assert raw(acl_cluster, "GET", "/v1/agent/self", c.token).json()["Config"]["NodeName"] == "node1"
    assert "lacks permission 'agent:write' on \"node1\"" in raw(acl_cluster, "PUT", "/v1/agent/reload", c.token).text
    assert "lacks permission 'service:write' on \"db\"" in denied(c.agent.service.register, "db")
    assert c.agent.service.register("web", check=consul.Check.ttl("10s"))
    master.agent.service.register("db")
    assert set(c.agent.services()) == {"web"}
    c.agent.check.ttl_pass("service:web")
    assert "'node:write' on \"node1\"" in denied(c.agent.maintenance, True)


def test_policy_and_token_crud(acl_cluster, master):
    assert {p["Name"] for p in master.acl.policy.list()} == {"global-management"}
    tokens = master.acl.token.list()
    assert {t["Description"] for t in tokens} == {"Anonymous Token", "Initial Management Token"}
    assert next(t for t in tokens if t["AccessorID"] == ANONYMOUS_ID)["SecretID"] == "anonymous"

    policy = master.acl.policy.create("kv-read", description="read all", rules={"key_prefix": {"": {"policy": "read"}}})
    assert master.acl.policy.read(policy["ID"])["Rules"] == policy["Rules"]
    updated = master.acl.policy.update(policy["ID"], "kv-read", rules={"key_prefix": {"": {"policy": "write"}}})
    assert updated["ModifyIndex"] > policy["ModifyIndex"] and updated["CreateIndex"] == policy["CreateIndex"]
    with pytest.raises(consul.ConsulException, match="already exists"):
        master.acl.policy.create("kv-read")

    token = master.acl.token.create(
        accessor_id="5b7e8f2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b",
        secret_id="9c8b7a6f-5e4d-4c3b-8a29-1f0e9d8c7b6a",
        policies_name=["kv-read"],
        description="reader",
    )
    assert token["Policies"] == [{"ID": policy["ID"], "Name": "kv-read"}]
    assert master.acl.token.read(token["AccessorID"])["Description"] == "reader"
    assert (
        acl_cluster.consul("node1", token=token["SecretID"]).acl.token.read_self()["AccessorID"] == token["AccessorID"]
    )
    assert [t["AccessorID"] for t in master.acl.token.list(policy=policy["ID"])] == [token["AccessorID"]]
    clone = master.acl.token.clone(token["AccessorID"], description="copy")
    assert clone["Policies"] == token["Policies"] and clone["SecretID"] != token["SecretID"]
    denied(acl_cluster.consul("node1", token=token["SecretID"]).acl.token.list)  # needs acl:read

    assert master.acl.token.delete(token["AccessorID"])
    assert master.acl.token.read(token["AccessorID"]) is None  # 404
    assert master.acl.policy.delete(policy["ID"])
    assert master.acl.policy.read(policy["ID"]) is None
    assert master.acl.token.read(clone["AccessorID"]).get("Policies") is None  # the deleted policy's link is gone
    with pytest.raises(consul.ConsulException, match="not permitted on the builtin global-management policy"):
        master.acl.policy.delete(GLOBAL_MANAGEMENT_ID)
    with pytest.raises(consul.ConsulException, match="UUID"):
        master.acl.token.read("unknown")


def test_policy_rules_in_hcl(acl_cluster, master):
    # py-consul sends rules as JSON; HCL arrives from other clients and the CLI.
    hcl = 'key_prefix "tuggle/" {\n  policy = "write"\n}\nkey "tuggle/ro" {\n  policy = "read"\n}\n'
    resp = raw(acl_cluster, "PUT", "/v1/acl/policy", MASTER, json={"Name": "hcl", "Rules": hcl})
    assert resp.status_code == 200 and resp.json()["Rules"] == hcl
    c = acl_cluster.consul("node1", token=master.acl.token.create(policies_name=["hcl"])["SecretID"])
    assert c.kv.put("tuggle/rw", b"x")
    assert "'key:write' on \"tuggle/ro\"" in denied(c.kv.put, "tuggle/ro", b"x")
    resp = raw(
        acl_cluster, "PUT", "/v1/acl/policy", MASTER, json={"Name": "bad", "Rules": 'key "x" { policy = "all" }'}
    )
    assert resp.status_code == 500 and resp.text.startswith("Invalid key policy")


def test_acl_reader_sees_tokens_with_secrets_hidden(acl_cluster, master):
    reader = acl_cluster.consul("node1", token=make_token(master, {"acl": "read"}, "acl-reader"))
    tokens = reader.acl.token.list()
    assert tokens and {t["SecretID"] for t in tokens} == {"<hidden>"}
    denied(reader.acl.policy.create, "nope")


def test_acl_endpoints_answer_401_without_acls(dev_cluster):
    with pytest.raises(consul.ACLDisabled):
        dev_cluster.consul("node1").acl.token.list()
    resp = requests.get(f"http://{dev_cluster.node('node1').http_addr}/v1/kv/x", timeout=5)
    assert resp.headers["X-Consul-Default-Acl-Policy"] == "allow"


def test_watches_use_the_agent_token(tmp_path, make_cluster):
    rec = Recorder(tmp_path)
    cfg = write_config(tmp_path / "cfg", {"type": "key", "key": "tuggle/k", "args": rec.args()})
    cluster = make_cluster(nodes=1, acl=True, acl_master_token=MASTER, config_dirs=[cfg])
    assert rec.wait(1)[0][0] == b"null\n"
    cluster.consul("node1", token=MASTER).kv.put("tuggle/k", b"v")
    assert b'"Key":"tuggle/k"' in rec.wait(2)[1][0]


def test_watches_with_an_agent_token_that_cannot_read_get_nothing(tmp_path, make_cluster):
    rec = Recorder(tmp_path)
    cfg = write_config(tmp_path / "cfg", {"type": "key", "key": "tuggle/k", "args": rec.args()})
    cluster = make_cluster(nodes=1, acl=True, acl_master_token=MASTER, agent_token="anonymous", config_dirs=[cfg])
    cluster.consul("node1", token=MASTER).kv.put("tuggle/k", b"v")
    with pytest.raises(AssertionError):
        rec.wait(1, timeout=0.5)  # every query is refused (403): the handler never runs


def test_cli_acl_flags(tmp_path):
    port = free_port_range(1)
    proc = subprocess.Popen(
        [str(BIN), "devconsul", "--nodes", "1", "--http-port", str(port), "--fast", "--acl",
         "--acl-master-token", MASTER, "--log-level", "warn"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        line = readline(proc, 15)
        assert line == f"devconsul ready: 1 node, http 127.0.0.1:{port}, acl default deny, master token {MASTER}"
        url = f"http://127.0.0.1:{port}/v1/kv/x"
        assert requests.get(url, timeout=5).status_code == 403
        assert requests.get(url, headers={"X-Consul-Token": MASTER}, timeout=5).status_code == 404
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    result = CliRunner().invoke(devconsul_command, ["--acl-master-token", MASTER])
    assert result.exit_code == 2 and "need --acl" in result.output
