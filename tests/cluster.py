"""A real tuggle cluster for tests: the embedded dev agent in this process and one
`tuggle-agent serve` subprocess per node, all on free ports of 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
import yaml

from tuggle_agent.devconsul import DevCluster, Timings

VENV_BIN = str(Path(sys.executable).parent)


def wait_until(pred, timeout: float = 10.0, interval: float = 0.02, what: str = "condition"):
    """Poll `pred` until it returns a truthy value; the value is returned."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            value = pred()
            if value:
                return value
        except AssertionError:
            raise  # a predicate's assert means "this will never happen": fail now
        except Exception as exc:  # the thing we wait for may not answer yet
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_exc})" if last_exc else ""))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_range(count: int) -> int:
    """A base port with `count` free ports after it (checked, then released)."""
    for _ in range(50):
        base = free_port()
        socks = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range")


class Agent:
    def __init__(self, cluster: "TuggleCluster", index: int, settings: dict):
        self.cluster = cluster
        self.index = index
        self.name = f"node{index + 1}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = cluster.workdir / self.name
        self.data_dir = self.dir / "data"
        self.config_path = self.dir / "tuggle.yaml"
        self.log_path = self.dir / "agent.log"
        self.proc: subprocess.Popen | None = None
        self.settings = settings
        self.write_config()

    @property
    def consul_addr(self) -> str:
        return self.cluster.dev.node(self.name).http_addr

    def write_config(self, **changes) -> None:
        self.settings.update(changes)
        self.dir.mkdir(parents=True, exist_ok=True)
        cfg = {"data_dir": str(self.data_dir), "port": self.port, "bind": "127.0.0.1",
               "consul": {"address": self.consul_addr}, "check_interval": "1s", "check_timeout": "1s",
               "progress_interval": "1s", "log_level": "debug", **self.settings}
        self.config_path.write_text(yaml.safe_dump(cfg))

    def start(self, wait: bool = True) -> None:
        env = {**os.environ, "PATH": VENV_BIN + os.pathsep + os.environ.get("PATH", "")}
        env.pop("CONSUL_HTTP_ADDR", None)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([os.path.join(VENV_BIN, "tuggle-agent"), "serve", "--config", str(self.config_path)],
                                     stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        log.close()
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        for _ in range(3):
            def up():
                assert self.proc.poll() is None, f"{self.name} exited:\n{self.log()}"
                return requests.get(self.url + "/?ping", timeout=1).status_code == 200
            try:
                wait_until(up, 30, what=f"{self.name} to answer /?ping")
                break
            except AssertionError:
                if "Address already in use" not in self.log():
                    raise
                # free_port() can race with other processes picking ports: take another.
                self.port = free_port()
                self.url = f"http://127.0.0.1:{self.port}"
                self.write_config(port=self.port)
                self.start(wait=False)
        wait_until(lambda: self.cluster.passing(self.name), 15, what=f"{self.name}'s check to pass")

    def install_watches(self, handler: str = "script") -> None:
        """What an operator does: render the watches into Consul's config dir and reload."""
        subprocess.run([os.path.join(VENV_BIN, "tuggle-agent"), "install-watches", "--consul-config-dir",
                        str(self.dir / "consul.d"), "--config", str(self.config_path), "--reload",
                        "--handler", handler], check=True, capture_output=True)

    def handler_log(self) -> str:
        p = self.data_dir / ".tuggle" / "handle-event.log"
        return p.read_text() if p.exists() else ""

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # conveniences
    def get(self, name: str, **kw):
        return requests.get(f"{self.url}/{name}", timeout=kw.pop("timeout", 60), **kw)

    def put(self, name: str, data, **kw):
        return requests.put(f"{self.url}/{name}", data=data, timeout=kw.pop("timeout", 60), **kw)

    def local_file(self, name: str) -> Path:
        return self.data_dir / name

    def fetching(self, name: str) -> list[dict]:
        """This node's running fetches of `name` (bytes verified, current source)."""
        return [f for f in requests.get(self.url + "/_tuggle/status", timeout=5).json()["fetching"]
                if f["name"] == name]


class TuggleCluster:
    def __init__(self, workdir: Path, nodes: int = 3, settings: dict | None = None, per_node: dict | None = None,
                 zones: int = 1, watches: bool | str = False):
        self.workdir = workdir
        self.watches = watches  # False, True (script handlers) or "http"
        env = {"PATH": VENV_BIN + os.pathsep + os.environ.get("PATH", "")}
        config_dirs = [str(workdir / "{node}" / "consul.d")] if watches else []
        for i in range(nodes if watches else 0):  # Consul refuses to start on a missing config dir
            (workdir / f"node{i + 1}" / "consul.d").mkdir(parents=True, exist_ok=True)
        self.dev = DevCluster(nodes=nodes, zones=zones, timings=Timings.fast(), config_dirs=config_dirs, env=env)
        self.n = nodes
        self.base_settings = settings or {}
        self.per_node = per_node or {}
        self.agents: list[Agent] = []

    def __enter__(self):
        self.dev.__enter__()
        try:
            for i in range(self.n):
                s = {**self.base_settings, **self.per_node.get(f"node{i + 1}", {})}
                self.agents.append(Agent(self, i, s))
            for a in self.agents:
                a.start(wait=False)
            for a in self.agents:
                a.wait_ready()
            if self.watches:
                for a in self.agents:
                    a.install_watches("http" if self.watches == "http" else "script")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        for a in self.agents:
            try:
                a.stop()
            except Exception:
                pass
        self.dev.__exit__(*exc)

    def __getitem__(self, i: int) -> Agent:
        return self.agents[i]

    def consul(self, node: str = "node1"):
        return self.dev.consul(node)

    def passing(self, node: str) -> bool:
        _, entries = self.consul().health.service("tuggle", passing=True)
        return any(e["Node"]["Node"] == node for e in entries)

    def holders(self, name: str) -> set[str]:
        from tuggle_agent.objects.names import object_id
        _, entries = self.consul().health.service("tuggle", tag=object_id(name))
        return {e["Node"]["Node"] for e in entries}

    def logs(self) -> str:
        return "\n".join(f"===== {a.name} =====\n{a.log()[-6000:]}" for a in self.agents)
