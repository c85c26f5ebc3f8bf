"""Raw-socket probes of a node's HTTP front, shared by tests/cluster and bench/: what a
hostile or unlucky client sees (refusals before the body, idle and half-sent
connections, slow readers), measured the same way in both."""

from __future__ import annotations

import socket
import statistics
import time
from contextlib import contextmanager

import requests


def answer_before_body(port: int, head: str, size: int, source: str = "127.0.0.1") -> tuple[str, int, bool]:
    """Send a request's headers announcing a `size`-byte body, then push the body while
    watching for the answer.  Returns (status line, body bytes the client could send
    before the answer arrived, whether the server then closed the connection)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)  # what we "sent" ~ what the server took
    try:
        s.sendall(head.encode() + f"Content-Length: {size}\r\n\r\n".encode())
        sent = 0
        block = b"x" * 65536
        s.setblocking(False)
        answer = b""
        deadline = time.monotonic() + 20
        while b"\r\n" not in answer and time.monotonic() < deadline and sent < size:
            try:
                answer += s.recv(65536)
                continue
            except BlockingIOError:
                pass
            try:
                sent += s.send(block)
            except BlockingIOError:
                time.sleep(0.005)
            except OSError:
                break  # reset: the answer may still be in our receive buffer
        s.setblocking(True)
        s.settimeout(5)
        closed = False
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    closed = True
                    break
                answer += data
        except (ConnectionResetError, TimeoutError):
            closed = not answer.endswith(b"\n") or closed
        return answer.split(b"\r\n", 1)[0].decode(errors="replace"), sent, closed
    finally:
        s.close()


@contextmanager
def idle_connections(port: int, count: int, half_sent: bool = True):
    """`count` connections held open: half of them (with half_sent) stop in the middle of
    their request headers, the others send nothing at all."""
    socks = []
    try:
        for i in range(count):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            if half_sent and i % 2:
                s.sendall(b"GET /?ping HTTP/1.1\r\nHost: x\r\n")  # headers never finished
            socks.append(s)
        yield socks
    finally:
        for s in socks:
            s.close()


@contextmanager
def slow_peer_readers(port: int, name: str, count: int):
    """`count` requests for `name` posing as peers (X-Tuggle-Internal), each reading only
    its status line and then nothing: yields the status codes they got."""
    socks, statuses = [], []
    try:
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(f"GET /{name} HTTP/1.1\r\nHost: x\r\nX-Tuggle-Internal: spoof\r\n\r\n".encode())
            socks.append(s)
        for s in socks:
            statuses.append(s.recv(12)[9:12].decode())
        yield statuses
    finally:
        for s in socks:
            s.close()


def ping_latencies(url: str, n: int = 20, timeout: float = 2.0) -> list[float | None]:
    """Seconds each of `n` GET /?ping took (None: no answer within `timeout`)."""
    out: list[float | None] = []
    for _ in range(n):
        t = time.monotonic()
        try:
            ok = requests.get(url + "/?ping", timeout=timeout).status_code == 200
        except requests.RequestException:
            ok = False
        out.append(time.monotonic() - t if ok else None)
    return out


def summary_ms(latencies: list[float | None]) -> str:
    got = [x for x in latencies if x is not None]
    if not got:
        return f"no answer ({len(latencies)}/{len(latencies)} timed out)"
    lost = len(latencies) - len(got)
    return f"p50 {statistics.median(got) * 1000:.1f} ms, max {max(got) * 1000:.1f} ms" + (
        f", {lost} timed out" if lost else ""
    )
