"""The agent process itself: start-up order, one serve per data dir, signals, readiness,
and connections that must not take it out of service (issue 8 §4, §6)."""

import os
import signal
import socket
import subprocess

import pytest
import requests
import yaml

from tuggle_agent.harness import TuggleCluster, agent_command, agent_env, free_port, wait_until
from tuggle_agent.harness.probes import idle_connections, ping_latencies


@pytest.fixture(scope="module")
def one_node(tmp_path_factory):
    with TuggleCluster(tmp_path_factory.mktemp("proc"), nodes=1) as c:
        yield c


def registered_port(c) -> int:
    return c.consul().agent.services()["tuggle"]["Port"]


def second_serve(c, tmp_path, **changes) -> subprocess.CompletedProcess:
    """Another `serve` for node1, with node1's settings changed as given; waits for its exit."""
    cfg = yaml.safe_load(c[0].config_path.read_text())
    cfg.update(changes)
    path = tmp_path / "second.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return subprocess.run(
        agent_command("serve", "--config", str(path)), env=agent_env(), capture_output=True, text=True, timeout=60
    )


def test_busy_port_exits_before_touching_consul(one_node, tmp_path):
    c = one_node
    before = registered_port(c)
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        busy = held.getsockname()[1]
        r = second_serve(c, tmp_path, port=busy, data_dir=str(tmp_path / "other-data"))
    assert r.returncode != 0
    assert f"cannot listen on 127.0.0.1:{busy}" in r.stderr and "Traceback" not in r.stderr
    assert registered_port(c) == before, "the node's service was re-pointed at the busy port"
    assert c[0].get("?ping").status_code == 200


def test_second_serve_on_the_same_data_dir_exits_and_touches_nothing(one_node, tmp_path):
    c = one_node
    before = registered_port(c)
    r = second_serve(c, tmp_path, port=free_port())
    assert r.returncode != 0
    assert "already serving" in r.stderr and str(c[0].data_dir) in r.stderr
    assert registered_port(c) == before
    assert c[0].get("?ping").status_code == 200


def test_sighup_keeps_the_agent_up(one_node):
    a = one_node[0]
    os.killpg(a.proc.pid, signal.SIGHUP)
    wait_until(lambda: "SIGHUP: reconciled" in a.log(), what="the SIGHUP reconcile")
    assert a.running and a.get("?ping").status_code == 200


def test_readiness_reports_consul_and_data_dir(one_node):
    c = one_node
    r = requests.get(c[0].url + "/_tuggle/ready", timeout=10)
    assert r.status_code == 200 and r.json() == {"ready": True, "problems": {}}
    c.dev.stop_node("node1")
    try:
        r = requests.get(c[0].url + "/_tuggle/ready", timeout=30)
        assert r.status_code == 503 and "consul" in r.json()["problems"]
        assert c[0].get("?ping").status_code == 200, "liveness must not depend on Consul"
    finally:
        c.dev.restart_node("node1")
    requests.post(c[0].url + "/_tuggle/reconcile", timeout=30)
    wait_until(lambda: requests.get(c[0].url + "/_tuggle/ready", timeout=10).status_code == 200, 20, what="ready again")


def test_idle_and_half_open_connections_do_not_block_ping(one_node):
    a = one_node[0]
    with idle_connections(a.port, 300):
        latencies = ping_latencies(a.url, 5)
    assert all(x is not None and x < 1.0 for x in latencies), latencies


def test_sigterm_deregisters(tmp_path):
    with TuggleCluster(tmp_path, nodes=1) as c:
        assert "tuggle" in c.consul().agent.services()
        c[0].stop()
        assert c[0].proc.returncode == 0
        assert "tuggle" not in c.consul().agent.services(), "a stopped agent left its registration behind"


def test_ping_answers_starting_while_consul_is_unreachable(tmp_path):
    """The port is bound before Consul is reached; meanwhile requests get a prompt 503."""
    port = free_port()
    cfg = {
        "data_dir": str(tmp_path / "data"),
        "bind": "127.0.0.1",
        "port": port,
        "consul": {"address": f"127.0.0.1:{free_port()}", "start_timeout": "20s"},
    }
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(cfg))
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            agent_command("serve", "--config", str(path)),
            env=agent_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:

        def answer():
            assert proc.poll() is None, log.read_text()
            return [requests.get(f"http://127.0.0.1:{port}/?ping", timeout=2)]  # a 503 Response is falsy

        (r,) = wait_until(answer, 10, what=f"an answer (log: {log})")
        assert r.status_code == 503 and "starting" in r.text and r.headers["Retry-After"]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
