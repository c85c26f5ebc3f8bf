"""`tuggle-agent devconsul` as a process: ready line, signals, config errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import requests
from click.testing import CliRunner

from tuggle_agent.devconsul.cli import devconsul_command
from tuggle_agent.harness import free_port_range

from .helpers import BIN, readline, wait_until


def test_runs_reloads_on_sighup_and_stops_on_sigterm(tmp_path):
    out = tmp_path / "calls"
    out.mkdir()
    handler = f'cat >> "{out}/log"'
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "w.json").write_text(json.dumps({"watches": [{"type": "key", "key": "k", "handler": handler}]}))
    port = free_port_range(2)
    proc = subprocess.Popen(
        [str(BIN), "devconsul", "--nodes", "2", "--http-port", str(port), "--fast",
         "--config-dir", str(tmp_path / "cfg"), "--log-level", "warn"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        assert readline(proc, 15) == f"devconsul ready: 2 nodes, http 127.0.0.1:{port}-{port + 1}"
        me = requests.get(f"http://127.0.0.1:{port + 1}/v1/agent/self", timeout=5).json()
        assert me["Config"]["NodeName"] == "node2"
        wait_until(lambda: (out / "log").exists() and (out / "log").read_text().count("null") == 2)  # both nodes
        os.kill(proc.pid, signal.SIGHUP)
        wait_until(lambda: (out / "log").read_text().count("null") == 4)  # every watch fired again
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.stdout.read() == b""  # exactly one line on stdout
    try:
        requests.get(f"http://127.0.0.1:{port}/v1/status/leader", timeout=2)
        raise AssertionError("still listening after SIGTERM")
    except requests.ConnectionError:
        pass


def test_config_error_exits_with_message(tmp_path):
    (tmp_path / "bad.json").write_text('{"watches": [{"type": "keyprefix", "args": ["x"]}]}')
    result = CliRunner().invoke(
        devconsul_command, ["--nodes", "1", "--http-port", str(free_port_range(1)), "--config-dir", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert "Must specify a single prefix to watch" in result.output and "bad.json" in result.output


def test_help_has_examples():
    result = CliRunner().invoke(devconsul_command, ["--help"])
    assert result.exit_code == 0
    assert "Examples:" in result.output and "--zones" in result.output and "--watch-backoff-base" in result.output
