"""The product's peer client against a misbehaving holder (a real HTTP server on a real
socket): it follows no redirect, accepts only the exact Content-Range it asked for, and
drops a holder that drips bytes."""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from tuggle_agent.consul.health import Holder
from tuggle_agent.engine.peer import PeerClient, SourceError
from tuggle_agent.objects.metadata import ObjectMeta

BODY = bytes(range(256)) * 64  # 16 KiB
META = ObjectMeta(name="obj", size=len(BODY), sha256="a" * 64, version="v1")


class FakeHolder(BaseHTTPRequestHandler):
    behaviour = "ok"
    hits: ClassVar[list[str]] = []  # paths asked for, shared by the handler instances

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.hits.append(self.path)
        if self.path.startswith("/elsewhere"):
            self._send(200, BODY)
        elif self.behaviour == "redirect":
            self.send_response(302)
            self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.behaviour == "off-by-one":
            self.send_response(206)
            self.send_header("Content-Range", f"bytes 101-{len(BODY) - 1}/{len(BODY)}")
            self.send_header("Content-Length", str(len(BODY) - 101))
            self.end_headers()
            self.wfile.write(BODY[101:])
        elif self.behaviour == "drip":
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            for b in BODY[:40]:
                self.wfile.write(bytes([b]))
                self.wfile.flush()
                time.sleep(0.1)
        elif self.behaviour == "close-delimited":  # no Content-Length: the body ends with the connection
            self.send_response(200)
            self.end_headers()
            self.wfile.write(BODY)
        else:
            self._send(200, BODY)

    def _send(self, status, body):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def holder():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHolder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    FakeHolder.hits = []
    yield Holder("fake", "127.0.0.1", server.server_address[1])
    server.shutdown()


def pull(holder, offset=0, stall=5.0, min_rate=1024):
    client = PeerClient("me", stall_timeout=stall, min_rate=min_rate)
    with client.open(holder, META, offset) as chunks:
        return b"".join(bytes(c) for c in chunks)  # views of one reused buffer: copy each


def test_a_good_holder_is_read_whole(holder):
    FakeHolder.behaviour = "ok"
    assert pull(holder) == BODY


def test_a_body_without_content_length_is_read_whole_too(holder):
    """Our holders always send a Content-Length (read straight from the socket); any other
    well-formed answer is read through urllib3."""
    FakeHolder.behaviour = "close-delimited"
    assert pull(holder) == BODY
    assert pull(holder, offset=1000) == BODY[1000:]  # a 200 to a Range: the first bytes skipped


def test_redirects_are_not_followed(holder):
    FakeHolder.behaviour = "redirect"
    with pytest.raises(SourceError, match="302"):
        pull(holder)
    assert FakeHolder.hits == ["/obj"], "the client followed the redirect"


def test_content_range_off_by_one_is_refused(holder):
    FakeHolder.behaviour = "off-by-one"
    with pytest.raises(SourceError, match="Content-Range"):
        pull(holder, offset=100)


def test_a_dripping_holder_is_dropped(holder):
    FakeHolder.behaviour = "drip"  # 10 B/s, never silent for stall_timeout
    t = time.monotonic()
    with pytest.raises(SourceError, match="min_source_rate"):
        pull(holder, stall=1.0, min_rate=1024)
    assert time.monotonic() - t < 3.0
