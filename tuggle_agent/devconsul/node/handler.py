"""Watch handlers: run a script (argv or legacy shell string) or POST to an
HTTP endpoint with the watch result, the way Consul's agent does.

Script handlers get the Go JSON of the result plus "\\n" on stdin and
CONSUL_INDEX in their environment; their merged stdout/stderr is captured
(last 4 KiB) and logged; the exit status is only logged. Each handler runs
in its own process group so stopping a node can end it and its children.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

import requests

if TYPE_CHECKING:
    from ..config import HTTPHandlerConfig, WatchSpec

OUTPUT_MAX = 4096


def _tail(output: bytes) -> str:
    text = output[-OUTPUT_MAX:].decode("utf-8", "replace")
    if len(output) > OUTPUT_MAX:
        return f"Captured {OUTPUT_MAX} of {len(output)} bytes\n...\n{text}"
    return text


class ProcessGroup:
    """Handler processes of one agent, so stop/kill can reach them."""

    def __init__(self) -> None:
        self._procs: set[subprocess.Popen] = set()
        self._lock = threading.Lock()

    def add(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._procs.add(proc)

    def discard(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._procs.discard(proc)

    def signal_all(self, sig: int) -> None:
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)

    def terminate_all(self, grace: float = 2.0) -> None:
        """SIGTERM every handler group, SIGKILL what is left after `grace`."""
        self.signal_all(signal.SIGTERM)
        with self._lock:
            procs = list(self._procs)
        deadline = time.monotonic() + grace
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(deadline - time.monotonic(), 0))
        self.signal_all(signal.SIGKILL)


class ScriptHandler:
    def __init__(self, spec: WatchSpec, env: Mapping[str, str], procs: ProcessGroup, log: logging.Logger):
        if spec.args:
            self.argv = list(spec.args)
        else:
            self.argv = [os.environ.get("SHELL") or "/bin/sh", "-c", spec.shell or ""]
        self.label = spec.args or spec.shell
        self.env = env
        self.procs = procs
        self.log = log

    def __call__(self, index: int, payload: bytes) -> None:
        env = {**self.env, "CONSUL_INDEX": str(index)}
        try:
            proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        except OSError as err:
            self.log.error("Failed to run watch handler: handler=%s error=%s", self.label, err)
            return
        self.procs.add(proc)
        try:
            # No timeout, as in Consul: a hung handler stalls its watch.
            output, _ = proc.communicate(payload)
        finally:
            self.procs.discard(proc)
        if proc.returncode != 0:
            self.log.error("Failed to run watch handler: handler=%s error=exit status %s", self.label, proc.returncode)
        self.log.debug("watch handler output: handler=%s output=%s", self.label, _tail(output))


class HTTPHandler:
    def __init__(self, config: HTTPHandlerConfig, log: logging.Logger):
        self.config = config
        self.log = log
        self.session = requests.Session()
        self.session.trust_env = False  # Go's client never proxies loopback hooks

    def __call__(self, index: int, payload: bytes) -> None:
        cfg = self.config
        headers = {name: ", ".join(values) for name, values in cfg.header.items()}
        headers.update({"Content-Type": "application/json", "X-Consul-Index": str(index)})
        try:
            resp = self.session.request(
                cfg.method, cfg.path, data=payload, headers=headers, timeout=cfg.timeout, verify=not cfg.tls_skip_verify
            )
        except requests.RequestException as err:
            self.log.error("Failed to invoke http handler: handler=%s error=%s", cfg.path, err)
            return
        body = _tail(resp.content)
        if 200 <= resp.status_code < 300:
            self.log.debug("http handler response: handler=%s status=%s body=%s", cfg.path, resp.status_code, body)
        else:
            self.log.error("http handler failed: handler=%s status=%s body=%s", cfg.path, resp.status_code, body)


def make_handler(spec: WatchSpec, env: Mapping[str, str], procs: ProcessGroup, log: logging.Logger):
    if spec.handler_type == "http":
        assert spec.http is not None  # parse_watch requires http_handler_config for http handlers
        return HTTPHandler(spec.http, log)
    return ScriptHandler(spec, env, procs, log)
