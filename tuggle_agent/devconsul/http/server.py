"""The HTTP listener of one node: stdlib ThreadingHTTPServer (a thread per
connection, HTTP/1.1 keep-alive, Content-Length always set) and the router
that maps `/v1/...` paths onto the endpoint functions of the area modules
(one module per Consul API area beside this one).

A thread per connection lets hundreds of blocking queries wait without
starving other requests; the state's targeted wake-ups keep them cheap.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, urlsplit

from ..codec import go_json
from ..config import ConfigError
from ..errors import ACLDisabled, InvalidRequest, NotFound, PermissionDenied, StateError
from . import acl, agent_services, catalog, coordinate, event, health, kv, session, status, txn, ui
from . import agent as agent_area
from .request import HTTPError, Request, Response, Route

if TYPE_CHECKING:
    from ..node.agent import Agent

log = logging.getLogger(__name__)


# Consul's HTTP wrapper maps errors to statuses in one place; so does this.
ERROR_STATUS: dict[type[Exception], int] = {
    InvalidRequest: 400,
    ACLDisabled: 401,
    PermissionDenied: 403,
    NotFound: 404,
    StateError: 500,
    ConfigError: 500,
}
DOMAIN_ERRORS = tuple(ERROR_STATUS)


def status_of(err: Exception) -> int:
    return next(status for kind, status in ERROR_STATUS.items() if isinstance(err, kind))


class Router:
    def __init__(self, routes: list[Route]):
        self.exact: dict[str, Route] = {}
        self.prefixes: list[Route] = []
        for route in routes:
            if route.is_prefix:
                self.prefixes.append(route)
            else:
                self.exact[route.path] = route
        self.prefixes.sort(key=lambda r: len(r.path), reverse=True)

    def find(self, path: str) -> Route | None:
        route = self.exact.get(path)
        if route is None:
            route = next((r for r in self.prefixes if path.startswith(r.path)), None)
        return route

    def dispatch(self, req: Request) -> Response:
        fault = req.agent.take_fault()
        if fault is not None:
            return Response.text(fault, "injected failure (tuggle-agent devconsul test hook)")
        route = self.find(req.path)
        if route is None:
            req.agent.log.warning("unsupported endpoint %s %s", req.method, req.path)
            return Response.text(
                404,
                "Invalid URL path: not a recognized HTTP API endpoint "
                f"(tuggle-agent devconsul does not implement {req.method} {req.path})",
            )
        if req.method not in route.methods:
            return Response.text(405, f"method {req.method} not allowed", {"Allow": ",".join(route.methods)})
        if route.is_prefix:
            req.tail = req.path[len(route.path) :]
        try:
            result = route.handler(req)
        except HTTPError as err:
            return Response.text(err.status, err.reason, err.headers)
        except DOMAIN_ERRORS as err:
            return Response.text(status_of(err), str(err))
        except Exception as err:  # a bug here must not kill the connection thread
            req.agent.log.exception("%s %s failed", req.method, req.path)
            return Response.text(500, f"internal error: {err}")
        resp = result if isinstance(result, Response) else Response.json(result)
        if req.filtered and req.token:
            # Only for a request that presented a token: telling anonymous
            # callers that something is hidden would leak (Consul does the same).
            resp.headers["X-Consul-Results-Filtered-By-ACLs"] = "true"
        if req.has("pretty") and resp.headers.get("Content-Type") == "application/json" and resp.body:
            resp.body = (go_json(json.loads(resp.body), indent=4) + "\n").encode()
        return resp


def default_router() -> Router:
    areas = (acl, agent_area, agent_services, catalog, coordinate, event, health, kv, session, status, txn, ui)
    return Router([route for area in areas for route in area.routes.table])


_router: Router | None = None
_router_lock = threading.Lock()


def router() -> Router:
    global _router
    with _router_lock:
        if _router is None:
            _router = default_router()
        return _router


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Listener

    def _handle(self) -> None:
        agent = self.server.agent
        body = self._read_body()
        if body is None:
            return
        url = urlsplit(self.path)
        req = Request(
            method=self.command,
            path=unquote(url.path),
            query=parse_qs(url.query, keep_blank_values=True),
            headers=self.headers,
            body=body,
            agent=agent,
        )
        resp = router().dispatch(req)
        agent.log.debug("%s %s -> %d", self.command, self.path, resp.status)
        if agent.tally is not None:
            agent.tally.record(self.headers.get("User-Agent", ""), self.command, req.path, len(body), len(resp.body))
        self._write(resp)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _handle

    def _read_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self._write(Response.text(400, "invalid Content-Length"))
            self.close_connection = True
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _write(self, resp: Response) -> None:
        reason = HTTPStatus(resp.status).phrase if resp.status in HTTPStatus._value2member_map_ else ""
        config = self.server.agent.datacenter.acl.config
        headers = {"X-Consul-Default-Acl-Policy": config.default_policy if config.enabled else "allow", **resp.headers}
        headers["Content-Length"] = str(len(resp.body))
        headers["Date"] = formatdate(usegmt=True)
        # Go canonicalises header names (X-Consul-Knownleader); so do we.
        lines = "".join(f"{'-'.join(p.capitalize() for p in k.split('-'))}: {v}\r\n" for k, v in headers.items())
        head = f"HTTP/1.1 {resp.status} {reason}\r\n" + lines
        payload = head.encode("latin-1") + b"\r\n" + (b"" if self.command == "HEAD" else resp.body)
        try:
            self.wfile.write(payload)
        except OSError:
            self.close_connection = True

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s " + format, self.server.agent.name, *args)


class _Listener(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 1024  # many clients may (re)connect at once

    def __init__(self, agent: Agent):
        self.agent = agent
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__((agent.address, agent.port), _RequestHandler)

    def process_request(self, request, client_address) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address) -> None:
        log.debug("%s: connection from %s ended with an error", self.agent.name, client_address, exc_info=True)


class NodeServer:
    """Binds at construction (so a port is held from then on); `serve()`
    starts accepting, `stop()` refuses new connections and cuts open ones."""

    def __init__(self, agent: Agent):
        self.listener = _Listener(agent)
        self._thread: threading.Thread | None = None

    def serve(self) -> None:
        self._thread = threading.Thread(
            target=self.listener.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"http-{self.listener.agent.name}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self.listener.shutdown()
            self._thread.join(timeout=5)
        self.listener.server_close()
        with self.listener.connections_lock:
            connections = list(self.listener.connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
