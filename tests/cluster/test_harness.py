"""The cluster harness itself: stopping a cluster reports an agent that hung on SIGTERM,
with its log, whether or not the test body failed first."""

import os
import signal

import consul
import pytest
import yaml

from tuggle_agent.harness import TuggleCluster, UncleanStop


def hang(agent) -> None:
    """A stopped process cannot act on SIGTERM: to the harness it is an agent that hangs."""
    os.killpg(agent.proc.pid, signal.SIGSTOP)


def test_an_agent_that_hangs_on_sigterm_is_killed_and_reported_with_its_log(tmp_path):
    c = TuggleCluster(tmp_path, nodes=2, stop_grace=1)
    with pytest.raises(UncleanStop) as info, c:
        c[1].kill()  # a crash on purpose is not a hang
        hang(c[0])
    report = str(info.value)
    assert "node1's tuggle-agent did not exit within 1s of SIGTERM and was killed" in report
    assert str(c[0].log_path) in report and "tuggle-agent ready: node node1" in report, "the log tail is quoted"
    assert "node2" not in report
    assert c[0].proc.returncode == -signal.SIGKILL and len(c.forced_kills) == 1


def test_a_hang_is_reported_beside_the_failure_already_raised(tmp_path):
    c = TuggleCluster(tmp_path, nodes=1, stop_grace=1)
    with pytest.raises(KeyError) as info, c:
        hang(c[0])
        raise KeyError("the test's own failure")
    assert any("did not exit within 1s of SIGTERM" in note for note in info.value.__notes__)


def test_acl_cluster_gives_nodes_the_master_token_and_merges_consul_settings(tmp_path):
    """acl=True: the nodes and cluster.consul() use the master token by default; a
    consul.* key in settings is merged with the harness's consul.address, not a
    replacement of it."""
    master = "0b6a1f3c-2e0d-4b4f-5a9e-8d7c6b5a4f3e"
    with TuggleCluster(
        tmp_path, nodes=2, acl=True, acl_master_token=master, per_node={"node2": {"consul": {"token": master}}}
    ) as c:
        assert c.master_token == master
        for a in c.agents:
            consul_cfg = yaml.safe_load(a.config_path.read_text())["consul"]
            assert consul_cfg == {"address": a.consul_addr, "token": master}
        assert c.passing("node1") and c.passing("node2")
        assert c[0].put("harness-acl.bin", b"x").status_code == 201
        assert c[1].get("harness-acl.bin").content == b"x"
        assert c.consul().kv.get("tuggle/harness-acl.bin")[1] is not None
        with pytest.raises(consul.ACLPermissionDenied):  # the cluster does enforce ACLs
            c.dev.consul("node1").kv.get("tuggle/harness-acl.bin")
