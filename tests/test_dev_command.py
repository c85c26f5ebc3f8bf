"""`tuggle-agent dev`, the Quick start's demo command, really brings up a working cluster."""

import os
import signal
import socket
import subprocess
import time

import requests

from tuggle_agent.harness import agent_command, free_port_range, wait_until


def test_dev_runs_a_cluster_and_stops_cleanly(tmp_path):
    port, consul = free_port_range(2), free_port_range(2)
    proc = subprocess.Popen(agent_command("dev", "--nodes", "2", "--port", str(port),
                                          "--consul-port", str(consul), "--workdir", str(tmp_path)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, "dev exited early:\n" + "".join(lines)
            lines.append(line)
            if "tuggle dev cluster ready" in line:
                break
        out = "".join(lines)
        assert f"http://127.0.0.1:{port + 1}" in out and "curl" in out
        n1, n2 = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"
        assert requests.put(f"{n1}/hello.txt?sync", data=b"hi").status_code == 201
        wait_until(lambda: (tmp_path / "node2" / "data" / "hello.txt").exists(), 30,
                   what="node2 to prefetch through its real watches")
        assert requests.get(f"{n2}/hello.txt").content == b"hi"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        rest = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0 and "stopped" in rest
    for p in (port, port + 1, consul, consul + 1):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is fine, a listener is not
            s.bind(("127.0.0.1", p))
            s.listen()  # nothing it started still listens
