"""`tuggle-agent dev`, the Quick start's demo command, as a real process: it brings up a
working cluster and stops cleanly, refuses taken ports before starting anything, and
exits non-zero naming the node when one dies."""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tuggle_agent.harness import agent_command, free_port_range, wait_until


def start_dev(workdir: Path, port: int, consul: int, nodes: int = 2) -> tuple[subprocess.Popen, str]:
    """A `tuggle-agent dev` process and its output up to its ready line."""
    proc = subprocess.Popen(
        agent_command(
            "dev", "--nodes", str(nodes), "--port", str(port), "--consul-port", str(consul), "--workdir", str(workdir)
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            stop_dev(proc)
            raise AssertionError("dev exited early:\n" + "".join(lines))
        lines.append(line)
        if "tuggle dev cluster ready" in line:
            return proc, "".join(lines)
    stop_dev(proc)
    raise AssertionError("dev was not ready within 60s:\n" + "".join(lines))


def stop_dev(proc: subprocess.Popen) -> str:
    """SIGTERM, as Ctrl-C would; the rest of its output."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    return proc.communicate(timeout=30)[0]


def assert_nothing_listens(*ports: int) -> None:
    for p in ports:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is fine, a listener is not
            s.bind(("127.0.0.1", p))
            s.listen()


def test_dev_runs_a_cluster_and_stops_cleanly(tmp_path):
    port, consul = free_port_range(2), free_port_range(2)
    proc, out = start_dev(tmp_path, port, consul)
    try:
        assert f"http://127.0.0.1:{port + 1}" in out and "curl" in out
        n1, n2 = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"
        assert requests.put(f"{n1}/hello.txt?sync", data=b"hi").status_code == 201
        wait_until(
            lambda: (tmp_path / "node2" / "data" / "hello.txt").exists(),
            30,
            what="node2 to prefetch through its real watches",
        )
        assert requests.get(f"{n2}/hello.txt").content == b"hi"
        assert f"{n1}/_tuggle/ui" in out  # the banner names the web console, which answers
        assert requests.get(f"{n1}/_tuggle/ui", timeout=5).status_code == 200
        # the client commands the banner prints work as printed (run from tmp_path)
        env = {**os.environ, "TUGGLE_ADDR": n1}
        cmds = [line.split("#")[0].split() for line in out.splitlines() if line.strip().startswith("tuggle-agent ")]
        assert [c[1] for c in cmds] == ["put", "status", "ls", "get", "rm"]
        for c in cmds:
            c = [a.replace("/tmp/release.txt", str(tmp_path / "release.txt")) for a in c]
            r = subprocess.run(agent_command(*c[1:]), env=env, capture_output=True, text=True, timeout=90)
            assert r.returncode == 0, f"{' '.join(c)}: {r.stdout}{r.stderr}"
        assert (tmp_path / "release.txt").read_bytes() == Path("/etc/os-release").read_bytes()
        assert requests.get(f"{n1}/release.txt").status_code == 404  # rm deleted it
    finally:
        rest = stop_dev(proc)
    assert proc.returncode == 0 and "stopped" in rest
    assert_nothing_listens(port, port + 1, consul, consul + 1)  # nothing it started still listens


@pytest.mark.parametrize(
    "taken,what",
    [
        (lambda port, consul: port + 1, "node2's tuggle-agent"),
        (lambda port, consul: consul, "node1's Consul dev agent"),
    ],
    ids=["tuggle-port", "consul-port"],
)
def test_a_taken_port_is_named_and_nothing_starts(tmp_path, taken, what):
    port, consul = free_port_range(2), free_port_range(2)
    busy = taken(port, consul)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", busy))  # bound, not even listening: still taken
        p = subprocess.run(
            agent_command(
                "dev", "--nodes", "2", "--port", str(port), "--consul-port", str(consul), "--workdir", str(tmp_path)
            ),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert p.returncode != 0
    assert f"127.0.0.1:{busy} ({what}) is already in use" in p.stderr, p.stderr
    assert "--port" in p.stderr and "ready" not in p.stdout
    assert not list(tmp_path.glob("node*/agent.log")), "no agent was started"


def serve_pids(workdir: Path) -> dict[str, int]:
    """{node: pid} of the `tuggle-agent serve` processes running a config under `workdir`."""
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().decode().split("\0")
        except (OSError, ValueError):
            continue  # not a process, or gone meanwhile
        configs = [Path(a) for a in argv if a.endswith("tuggle.yaml")]
        if "serve" in argv and configs and configs[0].parent.parent == workdir:
            found[configs[0].parent.name] = int(entry.name)
    return found


def test_a_node_that_dies_makes_dev_exit_nonzero_naming_it(tmp_path):
    port, consul = free_port_range(2), free_port_range(2)
    proc, _ = start_dev(tmp_path, port, consul)
    try:
        os.kill(serve_pids(tmp_path)["node2"], signal.SIGKILL)
        rest = proc.communicate(timeout=30)[0]
    finally:
        if proc.poll() is None:  # it did not notice: stop it, the test fails above
            stop_dev(proc)
    assert proc.returncode != 0, rest
    assert f"node2's tuggle-agent exited with -9; its log is {tmp_path / 'node2' / 'agent.log'}" in rest, rest
    assert "stopped" in rest, rest
    # The other node was stopped too (and the dev agent went with the dev process).
    assert serve_pids(tmp_path) == {}, rest
