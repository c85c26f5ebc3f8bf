"""`tuggle-agent adopt`: Consul KV loses every object; the holders heal it."""

import os
import subprocess

import requests

from tuggle_agent.harness import TuggleCluster, agent_command, agent_env, wait_until


def adopt(agent, *names) -> subprocess.CompletedProcess:
    return subprocess.run(
        agent_command("adopt", *names, "--agent", agent.url),
        env=agent_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_kv_wiped_then_adopt_heals_the_cluster(tmp_path):
    with TuggleCluster(tmp_path, nodes=3) as c:
        n1, n2, n3 = c.agents
        body = os.urandom(300_000)
        assert n1.put("app.tar.gz", body).status_code == 201
        assert n2.get("app.tar.gz").content == body
        c.consul().kv.delete("", recurse=True)  # an operator's mistake, or a KV restored from an old snapshot
        for a in c.agents:
            assert requests.post(a.url + "/_tuggle/reconcile", timeout=30).status_code == 200
        assert n1.local_file("app.tar.gz").read_bytes() == body, "an empty KV must not delete copies"
        assert n3.get("app.tar.gz").status_code == 404  # unknown to KV: nothing to fetch
        orphans = requests.get(n1.url + "/_tuggle/status", timeout=10).json()["orphans"]
        assert [o["name"] for o in orphans] == ["app.tar.gz"]
        wait_until(lambda: c.holders("app.tar.gz") == set(), what="orphans no longer advertised")

        r = adopt(n1)
        assert r.returncode == 0, r.stderr
        assert "app.tar.gz: published again from this node's copy" in r.stdout
        r = adopt(n2, "app.tar.gz")
        assert r.returncode == 0 and "already published" in r.stdout
        got = n3.get("app.tar.gz")
        assert got.status_code == 200 and got.content == body
        wait_until(lambda: {"node1", "node2"} <= c.holders("app.tar.gz"), what="holders advertised again")
        assert adopt(n3, "nothing-here").returncode == 1
