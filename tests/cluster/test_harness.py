"""The cluster harness itself: stopping a cluster reports an agent that hung on SIGTERM,
with its log, whether or not the test body failed first."""

import os
import signal

import pytest

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
