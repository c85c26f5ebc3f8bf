"""Consul reads survive one blip; writes are sent exactly once.  Against a real local
HTTP server that drops connections or answers 503 on cue, through the product's client."""

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import consul
import pytest
import requests

from tuggle_agent.config import ConsulSettings
from tuggle_agent.consul.client import (
    READ_RETRY_SECONDS,
    ConsulUnavailable,
    consul_errors,
    make_client,
    make_client_from,
)

KV_ANSWER = json.dumps(
    [
        {
            "Key": "tuggle/x",
            "Value": base64.b64encode(b"hello").decode(),
            "Flags": 0,
            "CreateIndex": 1,
            "ModifyIndex": 1,
            "LockIndex": 0,
        }
    ]
).encode()


class ScriptedConsul:
    """Answers each request with the next action of `script` ('drop', 'hang', '503',
    '503-retry-after', then 'ok' forever) and records the methods it saw."""

    def __init__(self, script):
        self.script = list(script)
        self.seen: list[str] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                with outer.lock:
                    outer.seen.append(self.command)
                    action = outer.script.pop(0) if outer.script else "ok"
                if action == "drop":  # close without a status line
                    self.close_connection = True
                    return
                if action == "hang":
                    time.sleep(3)
                    self.close_connection = True
                    return
                status = 503 if action.startswith("503") else 200
                body = b"No cluster leader" if status == 503 else (KV_ANSWER if self.command == "GET" else b"true")
                self.send_response(status)
                if action == "503-retry-after":
                    self.send_header("Retry-After", "3600")
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Consul-Index", "1")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_PUT = do_DELETE = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def client(self, timeout: float = 10.0):
        return make_client(f"127.0.0.1:{self.port}", None, timeout=timeout)


@pytest.mark.parametrize("script", [["drop"], ["503"], ["drop", "503", "drop"]])
def test_read_survives_a_blip(script):
    with ScriptedConsul(script) as server:
        _, entry = server.client().kv.get("tuggle/x")
        assert entry["Value"] == b"hello"
        assert server.seen == ["GET"] * (len(script) + 1)


def test_retry_after_is_not_obeyed_for_an_hour():
    with ScriptedConsul(["503-retry-after"]) as server:
        start = time.monotonic()
        assert server.client().kv.get("tuggle/x")[1]["Value"] == b"hello"
        assert time.monotonic() - start < 2


def test_read_gives_up_after_a_few_seconds():
    with ScriptedConsul(["503"] * 20) as server:
        client = server.client()
        start = time.monotonic()
        with pytest.raises(ConsulUnavailable, match=r"503|leader"), consul_errors(client, "reading"):
            client.kv.get("tuggle/x")
        elapsed = time.monotonic() - start
        assert len(server.seen) == 5, server.seen  # the first try and four retries
        assert READ_RETRY_SECONDS - 1 < elapsed < READ_RETRY_SECONDS + 3


def test_read_timeout_is_not_retried():
    with ScriptedConsul(["hang"]) as server:
        with pytest.raises(requests.exceptions.ReadTimeout):
            server.client(timeout=0.5).kv.get("tuggle/x")
        assert server.seen == ["GET"]


@pytest.mark.parametrize("action", ["drop", "503"])
def test_write_is_sent_once(action):
    with ScriptedConsul([action]) as server:
        client = server.client()
        with pytest.raises((requests.exceptions.ConnectionError, consul.ConsulException)):
            client.kv.put("tuggle/x", b"v", cas=0)
        with pytest.raises((requests.exceptions.ConnectionError, consul.ConsulException)):
            server.script.insert(0, action)
            client.kv.delete("tuggle/x")
        assert server.seen == ["PUT", "DELETE"]


def test_refused_connection_retried_for_reads_only():
    with ScriptedConsul([]) as server:
        port = server.port
    client = make_client_from(ConsulSettings("127.0.0.1", port))  # nothing listens there any more
    start = time.monotonic()
    with pytest.raises(requests.exceptions.ConnectionError):
        client.kv.put("tuggle/x", b"v")
    assert time.monotonic() - start < 0.5
    start = time.monotonic()
    with pytest.raises(requests.exceptions.ConnectionError):
        client.kv.get("tuggle/x")
    assert time.monotonic() - start > READ_RETRY_SECONDS - 1


def test_token_given_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "from-env")
    assert make_client_from(ConsulSettings(token="resolved")).token == "resolved"
    assert make_client("127.0.0.1:8500", None).token is None
