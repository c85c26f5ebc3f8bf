"""The product under Consul ACLs (default deny), as real processes: every node runs with
the least-privilege token the README gives operators; a token that cannot read the
prefix loses nothing; a bad or missing token is refused with a message naming it."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import hcl
import pytest
import requests
import yaml

from tuggle_agent.harness import TuggleCluster, agent_command, agent_env, free_port, wait_until

README = Path(__file__).parents[2] / "README.md"
MASTER = "5d2c9a7e-3b1f-4e8d-a6c0-9f4b2e7d1a38"
NODE_TOKEN = "c1e7b3a9-6d2f-4a0e-8b5c-2f9d4e6a7b13"


def readme_policies() -> list[str]:
    """The ```hcl blocks of README's "Running on a real Consul cluster": the node's
    policy, then the one the Consul agent's own token needs for the watches."""
    section = README.read_text().split("## Running on a real Consul cluster", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```hcl\n(.*?)```", section, re.S)


# What the README gives operators, which these tests run with. The node's policy: its KV
# prefixes (tuggle/, tuggle.pieces/, .graph/, .relay/, .lock/, .tombstones/), its
# service and the events it fires; sessions on its node (relay entries, semaphores);
# reading nodes (holders, coordinates) and its own agent (agent/self: the node name).
# The watches' policy: a keyprefix watch on tuggle/ and an event watch on tuggle.
LEAST_PRIVILEGE, WATCHES = readme_policies()
NODE_RULES = "key_prefix:tuggle:write service:tuggle:write event:tuggle:write session_prefix::write node_prefix::read agent_prefix::read"
WATCH_RULES = "key_prefix:tuggle:read event:tuggle:read"
WATCH_TOKEN = "8f3e6b21-9c4d-4a7e-b05f-1d2c3e4f5a6b"
# The same, but nothing under tuggle/ (the objects' metadata) can be read: Consul then
# answers a recursive read of the prefix with 404, exactly like an empty prefix.
CANNOT_READ_PREFIX = LEAST_PRIVILEGE + 'key_prefix "tuggle/" { policy = "deny" }\n'
DENIED = ("Permission denied", "ACL not found")


def create_token(cluster: TuggleCluster, name: str, rules: str, secret: str | None = None) -> str:
    """SecretID of a new token holding one new policy with HCL `rules` (as an operator
    writes them: `consul acl policy create -rules @tuggle.hcl`)."""
    resp = requests.put(
        f"http://{cluster.dev.node('node1').http_addr}/v1/acl/policy",
        json={"Name": name, "Rules": rules},
        headers={"X-Consul-Token": cluster.master_token or ""},
        timeout=5,
    )
    resp.raise_for_status()
    token = cluster.consul().acl.token.create(secret_id=secret, policies_id=[resp.json()["ID"]], description=name)
    return token["SecretID"]


def make_tokens(cluster: TuggleCluster) -> None:
    create_token(cluster, "tuggle-node", LEAST_PRIVILEGE, NODE_TOKEN)
    create_token(cluster, "consul-agent-watches", WATCHES, WATCH_TOKEN)


@pytest.fixture(scope="module")
def acl_cluster3(tmp_path_factory):
    """Three nodes, ACLs on, every node with the least-privilege token; the watches
    (script handlers) run with the dev agent's own token (agent_token), as Consul runs
    config-file watches, and that token only reads."""
    with TuggleCluster(
        tmp_path_factory.mktemp("acl"),
        nodes=3,
        watches=True,
        acl=True,
        acl_master_token=MASTER,
        settings={"consul": {"token": NODE_TOKEN}, "holder_wait": "5s"},
        agent_token=WATCH_TOKEN,
        before_agents=make_tokens,
    ) as c:
        yield c


def holds(agent, name: str, body: bytes) -> bool:
    p = agent.local_file(name)
    return p.exists() and hashlib.sha256(p.read_bytes()).digest() == hashlib.sha256(body).digest()


def status(agent) -> dict:
    return requests.get(agent.url + "/_tuggle/status", timeout=5).json()


def denials(cluster: TuggleCluster) -> list[str]:
    """Lines of the nodes' and their watch handlers' logs that show Consul refusing a token."""
    text = "\n".join(a.log() + a.handler_log() for a in cluster.agents)
    return [line for line in text.splitlines() if any(d in line for d in DENIED)]


def rules_of(policy: str) -> set[str]:
    """`kind:segment:level` of every rule in an HCL policy."""
    return {
        f"{kind}:{seg}:{body['policy']}" for kind, blocks in hcl.loads(policy).items() for seg, body in blocks.items()
    }


def test_readme_policies_grant_exactly_what_a_node_and_its_watches_need():
    assert rules_of(LEAST_PRIVILEGE) == set(NODE_RULES.split())
    assert rules_of(WATCHES) == set(WATCH_RULES.split())


def test_least_privilege_token_runs_put_fetch_sync_and_delete(acl_cluster3, unique_name):
    c = acl_cluster3
    for a in c.agents:
        assert yaml.safe_load(a.config_path.read_text())["consul"]["token"] == NODE_TOKEN
    n1, n2, n3 = c.agents

    # PUT, then GETs from the two other nodes at once: holder lookup, semaphore,
    # relay entries (sessions on each node), graph edges.
    name = unique_name()
    body = os.urandom(3 << 20)
    assert n1.put(name, body).status_code == 201
    wait_until(lambda: c.holders(name) == {"node1"}, 10, what="node1 to advertise")
    with ThreadPoolExecutor(2) as pool:
        answers = dict(zip(("node2", "node3"), pool.map(lambda a: a.get(name), (n2, n3)), strict=True))
    for node, resp in answers.items():
        assert resp.status_code == 200 and resp.content == body, node
    wait_until(lambda: c.holders(name) == {"node1", "node2", "node3"}, 10, what="every node to advertise")
    graph = requests.get(f"{n1.url}/{name}?graph", timeout=5)  # edges written under tuggle.graph/
    assert graph.status_code == 200 and "node2" in graph.text and "node3" in graph.text, graph.text

    # ?sync: every node prefetches without a GET (watches: the dev agent's token).
    synced = unique_name()
    sbody = os.urandom(300_000)
    assert n2.put(synced + "?sync", sbody).status_code == 201
    for a in c.agents:
        wait_until(lambda a=a: holds(a, synced, sbody), 20, what=f"{a.name} to prefetch {synced}")

    # DELETE on one node removes every copy.
    for doomed in (name, synced):
        assert requests.delete(f"{n3.url}/{doomed}", timeout=10).status_code in (200, 204)
    for a in c.agents:
        for doomed in (name, synced):
            wait_until(lambda a=a, d=doomed: not a.local_file(d).exists(), 20, what=f"{a.name} to delete {doomed}")
    assert all(not status(a)["orphans"] for a in c.agents)
    assert not denials(c), "the least-privilege token was refused something:\n" + "\n".join(denials(c)[:20])


def test_token_that_cannot_read_the_prefix_deletes_nothing(acl_cluster3, unique_name):
    """node3 restarted with a token that cannot read tuggle/: Consul answers its recursive
    read with 404, as for an empty prefix. Nothing may be deleted: its copies are kept as
    orphans and reported; GETs of them answer a clear error; with the token fixed, they
    are advertised again and served, byte for byte."""
    c = acl_cluster3
    n1, n2, n3 = c.agents
    shared, only = unique_name(), unique_name()  # one copy everywhere, one held by node3 alone
    bodies = {shared: os.urandom(400_000), only: os.urandom(300_000)}
    assert n1.put(shared + "?sync", bodies[shared]).status_code == 201
    assert n3.put(only, bodies[only]).status_code == 201
    wait_until(lambda: holds(n3, shared, bodies[shared]), 20, what="node3 to prefetch the shared object")
    wait_until(lambda: c.holders(only) == {"node3"}, 10, what="node3 to advertise its only copy")

    blind = create_token(c, f"blind-{uuid.uuid4().hex[:8]}", CANNOT_READ_PREFIX)
    n3.write_config(consul={"token": blind})
    try:
        n3.stop()
        seen = len(n3.log())
        n3.start()
        for name, body in bodies.items():
            assert holds(n3, name, body), f"{name}: the copy on node3 was deleted or changed"
        orphans = {o["name"]: o["why"] for o in status(n3)["orphans"]}
        assert set(bodies) <= set(orphans), orphans
        assert "as an orphan" in n3.log()[seen:] and "removed local copy" not in n3.log()[seen:]
        wait_until(lambda: "node3" not in c.holders(only) | c.holders(shared), 10, what="node3 to stop advertising")
        for name in bodies:
            resp = n3.get(name, timeout=30)
            assert resp.status_code in (403, 404, 503), (resp.status_code, resp.text)
            assert "Traceback" not in resp.text and resp.content != bodies[name]
            if resp.status_code != 404:
                assert "403" in resp.text and "token" in resp.text, resp.text  # names the problem
        assert "Traceback" not in n3.log()[seen:]
    finally:
        n3.write_config(consul={"token": NODE_TOKEN})
        n3.restart()
    wait_until(lambda: "node3" in c.holders(only) and "node3" in c.holders(shared), 10, what="node3 to advertise again")
    assert not status(n3)["orphans"]
    for name, body in bodies.items():
        assert holds(n3, name, body)
        assert n2.get(name).content == body


@pytest.mark.parametrize(
    ("token", "consul_says"),
    [
        ("0d9c8b7a-6f5e-4d3c-2b1a-0f9e8d7c6b5a", "ACL not found"),  # a token Consul does not know
        (None, "Permission denied: anonymous token lacks permission 'agent:read'"),  # no token at all
    ],
    ids=["unknown-token", "anonymous"],
)
def test_serve_with_a_token_consul_refuses_exits_naming_the_token(acl_cluster3, tmp_path, token, consul_says):
    """`serve` retries a refusing Consul for consul.start_timeout (a token may be created
    after the agent starts), then exits 1 with Consul's 403 message and the settings to
    check -- no traceback, nothing registered, the data dir untouched."""
    consul_cfg = {"address": acl_cluster3.dev.node("node1").http_addr, "start_timeout": "2s"}
    if token:
        consul_cfg["token"] = token
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "keep.bin").write_bytes(b"x")
    config = tmp_path / "tuggle.yaml"
    config.write_text(
        yaml.safe_dump(
            {"data_dir": str(tmp_path / "data"), "port": free_port(), "bind": "127.0.0.1", "consul": consul_cfg}
        )
    )
    done = subprocess.run(
        agent_command("serve", "--config", str(config)), env=agent_env(), capture_output=True, text=True, timeout=60
    )
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "Traceback" not in out, out
    last = out.strip().splitlines()[-1]
    assert last.startswith("Error: Consul at ") and "refused" in last and "403" in last and consul_says in last, last
    assert "consul.token" in last and "CONSUL_HTTP_TOKEN" in last, last  # what to check
    assert "Retrying" in out  # it did retry before giving up
    assert (tmp_path / "data" / "keep.bin").read_bytes() == b"x"
