"""Install and run under systemd: `tuggle-agent init` writes the shipped files for this
installation, and `serve` tells systemd (Type=notify) when it is ready and when it stops."""

import json
import os
import socket
import subprocess

import pytest

from tests import REPO
from tuggle_agent.cli.serve import sd_notify
from tuggle_agent.config import load_config
from tuggle_agent.harness import TuggleCluster, agent_command, agent_env, wait_until


def _init(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(agent_command("init", *args), capture_output=True, text=True, env=agent_env(), timeout=60)


def test_init_writes_config_hooks_watches_and_unit_for_this_installation(tmp_path):
    prefix, data = tmp_path / "etc", tmp_path / "data"
    r = _init("--prefix", str(prefix), "--data-dir", str(data))
    assert r.returncode == 0, r.stderr
    exe = agent_command()[0]
    config = prefix / "tuggle.yaml"
    cfg = load_config(config, env={})
    assert cfg.data_dir == data and cfg.port == 8900
    unit = (prefix / "systemd/tuggle-agent.service").read_text()
    assert f"ExecStart={exe} serve --config {config}\n" in unit and f"ReadWritePaths={data}\n" in unit
    assert "Type=notify" in unit and "/usr/local/bin" not in unit and "/etc/tuggle-agent" not in unit
    watches = json.loads((prefix / "consul.d/tuggle-agent-watches.json").read_text())["watches"]
    assert [w["args"] for w in watches] == [[exe, "handle-event", "--config", str(config)]] * 2
    for hook in ("check-disk-space", "extract-tarball", "notify", "verify-checksum"):
        path = prefix / "hooks" / hook
        assert path.read_bytes() == (REPO / "hooks" / hook).read_bytes() and os.access(path, os.X_OK), hook
    assert f"command: [{prefix}/hooks/check-disk-space" in config.read_text()
    notify = subprocess.run([prefix / "hooks/notify"], env={**agent_env(), "TUGGLE_NAME": "a"}, capture_output=True)
    assert notify.returncode == 0
    for line in r.stdout.splitlines()[:8]:
        assert line.startswith("wrote "), line


def test_init_refuses_to_overwrite_unless_forced(tmp_path):
    prefix, units = tmp_path / "etc", tmp_path / "systemd-system"
    (prefix).mkdir()
    (prefix / "tuggle.yaml").write_text("port: 9999\n")
    r = _init("--prefix", str(prefix), "--systemd-dir", str(units))
    assert r.returncode == 1 and "tuggle.yaml" in r.stderr and "--force" in r.stderr
    assert (prefix / "tuggle.yaml").read_text() == "port: 9999\n"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["etc", "tuggle.yaml"], "nothing else written"
    r = _init("--prefix", str(prefix), "--systemd-dir", str(units), "--force")
    assert r.returncode == 0, r.stderr
    assert "port: 8900" in (prefix / "tuggle.yaml").read_text()
    assert (units / "tuggle-agent.service").is_file() and not (prefix / "systemd").exists()


@pytest.fixture
def notify_socket(tmp_path, monkeypatch):
    """A datagram socket standing in for systemd's; $NOTIFY_SOCKET names it."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(30)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    with sock:
        yield sock


def test_sd_notify_sends_one_datagram_and_never_fails(notify_socket, monkeypatch):
    assert sd_notify("READY=1\nSTATUS=x")
    assert notify_socket.recv(4096) == b"READY=1\nSTATUS=x"
    name = f"tuggle-test-abstract-{os.getpid()}"
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    with abstract:
        abstract.bind("\0" + name)
        assert sd_notify("STOPPING=1")
        assert abstract.recv(4096) == b"STOPPING=1"
    assert not sd_notify("READY=1"), "nobody listening: logged, not raised"
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not sd_notify("READY=1")


def test_serve_notifies_ready_once_registered_and_stopping_on_sigterm(tmp_path, notify_socket):
    with TuggleCluster(tmp_path, nodes=1) as c:
        ready = notify_socket.recv(4096).decode()
        assert ready.startswith("READY=1\nSTATUS=serving node node1"), ready
        assert c.passing("node1") or wait_until(lambda: c.passing("node1"), 10)
        c[0].terminate()
        assert notify_socket.recv(4096) == b"STOPPING=1"
        c[0].wait_stopped()
