"""The HTTP front (WSGI): the Go tuggle's API plus a few extras.  One route table, one
error -> status table, thin handlers; decisions live in the engine (engine/node.py).

  GET /                 objects in the cluster (JSON)       GET /?ping   liveness check
  PUT /<name>[?sync]    store; 201 / 409 if the name exists
  GET|HEAD /<name>      local copy, or fetched from the nearest holder while streaming
  DELETE /<name>        cluster-wide delete
  GET /<name>?graph[&format=svg|png]   who fetched from whom
  GET /<name>?status    the object's rollout across the cluster (JSON)
  POST /<name>?sync     (re-)sync an existing object to every (matching) node
  /_tuggle/status, /_tuggle/metrics, /_tuggle/ready    open
  GET /_tuggle/ui[/static/<path>|/api/<what>]          the web console (front/ui.py), read-only
  POST /_tuggle/verify/<name>          open to peers: "re-check your copy"
  POST /_tuggle/watch|reconcile|adopt  this host only (the node's own watch handlers, operators)

Werkzeug does the HTTP details (Range, If-None-Match, If-Modified-Since) for local
files; streams of in-flight fetches honour a single byte range themselves.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable

from werkzeug.exceptions import HTTPException, RequestedRangeNotSatisfiable
from werkzeug.http import parse_range_header
from werkzeug.routing import Map, Rule
from werkzeug.utils import send_file
from werkzeug.wrappers import Request, Response
from werkzeug.wsgi import wrap_file

from .. import metrics
from ..engine.node import Node
from ..engine.peer import INTERNAL_HEADER, content_range
from ..engine.reads import PeerFile
from ..errors import (
    BadSources,
    Busy,
    Deleted,
    Exists,
    FetchOnly,
    Forbidden,
    Internal,
    Invalid,
    NoHolder,
    NoSpace,
    NotFound,
    TimedOut,
    TooLarge,
    TuggleError,
    Unavailable,
)
from ..objects import syncfilter
from ..objects.metadata import DEFAULT_CONTENT_TYPE, ObjectMeta, SyncSpec, now_rfc3339
from ..objects.names import BadName
from ..watches.dispatch import dispatch
from ..watches.input import BadInput, parse_watch_body
from .graph import FORMATS, DotMissing, render, to_dot
from .ui import ConsoleUI

log = logging.getLogger(__name__)

# The one place where domain errors become HTTP statuses (most specific first).
STATUS: tuple[tuple[type[Exception], int], ...] = (
    (Deleted, 404),
    (NotFound, 404),
    (Exists, 409),
    (BadName, 400),
    (Invalid, 400),
    (Forbidden, 403),
    (FetchOnly, 405),
    (TooLarge, 413),
    (NoSpace, 507),
    (NoHolder, 503),
    (Busy, 503),
    (Unavailable, 503),
    (BadSources, 502),
    (TimedOut, 504),
    (DotMissing, 501),
    (Internal, 500),
)


def status_of(exc: Exception) -> int:
    return next((code for kind, code in STATUS if isinstance(exc, kind)), 500)


def text(body: str, status: int, **headers) -> Response:
    return Response(body.rstrip("\n") + "\n", status=status, mimetype="text/plain", headers=headers)


def as_json(data, status: int = 200) -> Response:
    return Response(json.dumps(data, indent=1) + "\n", status=status, mimetype="application/json")


OPEN, WRITE, LOCAL = "open", "write", "local"  # who may call a route

ROUTES = Map(
    [
        Rule("/", endpoint="root", methods=["GET", "HEAD"]),
        Rule("/_tuggle/status", endpoint="status", methods=["GET"]),
        Rule("/_tuggle/metrics", endpoint="metrics", methods=["GET"]),
        Rule("/_tuggle/ready", endpoint="ready", methods=["GET"]),
        Rule("/_tuggle/verify/<name>", endpoint="verify", methods=["POST"]),
        Rule("/_tuggle/watch", endpoint="watch", methods=["POST"]),
        Rule("/_tuggle/reconcile", endpoint="reconcile", methods=["POST"]),
        Rule("/_tuggle/adopt", endpoint="adopt", methods=["POST"]),
        Rule("/_tuggle/ui", endpoint="ui", methods=["GET", "HEAD"]),
        Rule("/_tuggle/ui/", endpoint="ui", methods=["GET", "HEAD"]),
        Rule("/_tuggle/ui/static/<path:path>", endpoint="ui_static", methods=["GET", "HEAD"]),
        Rule("/_tuggle/ui/api/<path:what>", endpoint="ui_api", methods=["GET", "HEAD"]),
        Rule("/_tuggle/<path:what>", endpoint="unknown"),
        Rule("/<path:name>", endpoint="object", methods=["GET", "HEAD", "PUT", "DELETE", "POST"]),
    ]
)


class Body:
    """The request body as the engine reads it: a malformed chunked encoding is the
    client's error (400), not ours (500)."""

    def __init__(self, stream):
        self.stream = stream

    def read(self, n: int = -1) -> bytes:
        try:
            return self.stream.read(n)
        except ValueError as exc:
            raise Invalid(f"malformed request body ({exc}); nothing stored") from None

    def readinto(self, b: bytearray) -> int:
        """Fills `b` unless the body ends first; 0 at its end.  Straight into `b` when the
        server's stream can (front/server.py KnownLengthBody), else through read()."""
        readinto = getattr(self.stream, "readinto", None)
        if readinto is None:
            data = self.read(len(b))
            b[: len(data)] = data
            return len(data)
        try:
            return readinto(b)
        except ValueError as exc:
            raise Invalid(f"malformed request body ({exc}); nothing stored") from None


class TuggleApp:
    def __init__(self, node: Node):
        self.node = node
        self.cfg = node.cfg
        ui = ConsoleUI(node)
        # endpoint -> (handler, who may call it); methods are in ROUTES.
        self.handlers: dict[str, tuple[Callable[..., Response], str]] = {
            "root": (self.root, OPEN),
            "status": (self.status, OPEN),
            "metrics": (self.metrics, OPEN),
            "ready": (self.ready, OPEN),
            "verify": (self.verify, OPEN),
            "watch": (self.watch, LOCAL),
            "reconcile": (self.reconcile, LOCAL),
            "adopt": (self.adopt, LOCAL),
            "ui": (ui.page, OPEN),
            "ui_static": (ui.static, OPEN),
            "ui_api": (ui.api, OPEN),
            "unknown": (self.unknown, OPEN),
            "object": (self.object, OPEN),
        }

    def __call__(self, environ, start_response):
        request = Request(environ)
        try:
            endpoint, args = ROUTES.bind_to_environ(environ).match()
            handler, access = self.handlers[endpoint]
            self.check_access(request, access)
            response = handler(request, **args)
        except HTTPException as exc:
            response = exc.get_response(environ)
        except (TuggleError, BadName, DotMissing) as exc:
            response = self.error(request, exc)
        return response(environ, start_response)

    def error(self, req: Request, exc: Exception) -> Response:
        status = status_of(exc)
        (log.error if status >= 500 else log.info)("%s %s: %d %s", req.method, req.path, status, exc)
        headers = {}
        retry_after = getattr(exc, "retry_after", None)
        if retry_after:
            headers["Retry-After"] = str(retry_after)
        if status in (405,) and isinstance(exc, FetchOnly):
            headers["Allow"] = "GET, HEAD"
        return text(str(exc), status, **headers)

    def check_access(self, req: Request, access: str) -> None:
        addr = req.remote_addr or ""
        if access == LOCAL and not self.cfg.is_this_host(addr):
            raise Forbidden(
                f"{req.method} {req.path} from {addr} refused: node control endpoints answer only "
                "this host (the node's own watch handlers and operators)"
            )
        if access == WRITE and not self.cfg.allows_write_from(addr):
            raise Forbidden(
                f"{req.method} from {addr} refused: writes are allowed only from the addresses in "
                f"the write_allow setting ({', '.join(map(str, self.cfg.write_allow))})"
            )
        token = self.cfg.write_token_value
        if (
            access == WRITE
            and token
            and not hmac.compare_digest(req.headers.get("Authorization", ""), f"Bearer {token}")
        ):
            raise Forbidden(
                f"{req.method} refused: this node requires a write token (send `Authorization: Bearer <write_token>`)"
            )

    # -- listing and node endpoints ----------------------------------------
    def root(self, req: Request) -> Response:
        if "ping" in req.args:
            return text("pong", 200)
        return as_json(self.node.listing_with_holders())

    def status(self, req: Request) -> Response:
        return as_json(self.node.status())

    def ready(self, req: Request) -> Response:
        problems = self.node.ready()
        return as_json({"ready": not problems, "problems": problems}, 503 if problems else 200)

    def metrics(self, req: Request) -> Response:
        body, ctype = metrics.exposition()
        return Response(body, content_type=ctype)

    def verify(self, req: Request, name: str) -> Response:
        # Open to peers: a fetcher that got bad bytes from us asks us to re-check our copy.
        started = self.node.verify_later(name)
        return text(f"verification of {name} {'started' if started else 'not needed'}", 202)

    def watch(self, req: Request) -> Response:
        # The body of a Consul watch: from `handle-event`, or from Consul's http handler.
        try:
            data, kind = parse_watch_body(req.get_data())
        except BadInput as exc:
            raise Invalid(f"not a Consul watch result: {exc}; nothing was changed") from None
        return as_json(dispatch(self.node, data, kind))

    def reconcile(self, req: Request) -> Response:
        return as_json(self.node.reconcile())

    def adopt(self, req: Request) -> Response:
        return as_json(self.node.adopt(req.args.getlist("name")))

    def unknown(self, req: Request, what: str) -> Response:
        raise NotFound(f"unknown control endpoint /_tuggle/{what}")

    # -- objects ----------------------------------------------------------
    def object(self, req: Request, name: str) -> Response:
        if req.method in ("PUT", "DELETE", "POST"):
            self.check_access(req, WRITE)
        if req.method == "PUT":
            return self.put(req, name)
        if req.method == "DELETE":
            return text(self.node.delete(name), 200)
        if req.method == "POST":
            if "sync" not in req.args:
                return text(f"POST /{name} needs ?sync", 405, Allow="GET, HEAD, PUT, DELETE")
            self.node.sync(name, self.sync_spec(req))
            return text(f"sync of {name} requested", 202)
        if "graph" in req.args:
            return self.graph(req, name)
        if "status" in req.args:
            return as_json(self.node.rollout_status(name))
        if INTERNAL_HEADER in req.headers:
            return self.to_peer(req, name)
        return self.get(req, name)

    def put(self, req: Request, name: str) -> Response:
        length = req.content_length
        sync = self.sync_spec(req) if "sync" in req.args else None
        # Refuse on the request line and headers alone, before a byte of the body is read.
        self.node.check_upload(name, length)
        ctype = req.headers.get("Content-Type") or DEFAULT_CONTENT_TYPE
        meta = self.node.upload(name, Body(req.environ["wsgi.input"]), length, ctype, sync)
        resp = text(f"stored {name}: {meta.size} bytes, sha256 {meta.sha256}", 201)
        resp.headers["ETag"] = f'"{meta.etag}"'
        resp.headers["X-Tuggle-Object-Id"] = meta.id
        return resp

    @staticmethod
    def sync_spec(req: Request) -> SyncSpec:
        """?sync's node/service/tag regexes, with Consul's own rules for event filters."""
        filters = {k: req.args.get(k, "") for k in ("node", "service", "tag")}
        try:
            syncfilter.check(**filters)
        except syncfilter.BadFilter as exc:
            raise Invalid(str(exc)) from None
        return SyncSpec(**filters, requested_at=now_rfc3339())

    def object_headers(self, meta: ObjectMeta) -> dict:
        return {
            "Content-Type": meta.content_type,
            "Last-Modified": meta.last_modified,
            "X-Tuggle-Object-Id": meta.id,
            "ETag": f'"{meta.etag}"',
            "Accept-Ranges": "bytes",
        }

    def get(self, req: Request, name: str) -> Response:
        head = req.method == "HEAD"
        opened = self.node.open(name, head=head)
        meta = opened.meta
        if opened.path is not None:
            # The copy opened by the engine (a counted reader, closed with the response).
            resp = send_file(
                opened.file or str(opened.path),
                req.environ,
                mimetype=meta.content_type,
                etag=meta.etag,
                last_modified=meta.created,
                max_age=None,
                download_name=opened.path.name,
            )
            resp.content_length = meta.size
            resp = resp.make_conditional(req.environ, accept_ranges=True, complete_length=meta.size)
            resp.headers["X-Tuggle-Object-Id"] = meta.id
            return resp
        if opened.download is None:  # HEAD of an object we don't hold: answered from metadata
            return Response(status=200, headers={**self.object_headers(meta), "Content-Length": str(meta.size)})
        start, end = self.byte_range(req, meta.size)
        return self.ranged(meta, start, end, req, opened.read(start, end))

    def to_peer(self, req: Request, name: str) -> Response:
        meta, (start, end), body = self.node.open_for_peer(name, lambda size: self.byte_range(req, size))
        if req.method == "HEAD":
            body.close()  # no body is sent: give back the peer slot now
        elif isinstance(body, PeerFile):
            # Spans of open files: our server's file_wrapper sends them with sendfile().
            return self.ranged(meta, start, end, req, wrap_file(req.environ, body))  # type: ignore[arg-type]
        return self.ranged(meta, start, end, req, body)

    @staticmethod
    def byte_range(req: Request, size: int) -> tuple[int, int]:
        rng = parse_range_header(req.headers.get("Range"))
        if rng is None or len(rng.ranges) != 1:
            return 0, size
        bounds = rng.range_for_length(size)
        if bounds is None:
            raise RequestedRangeNotSatisfiable(length=size)
        return bounds

    def ranged(self, meta: ObjectMeta, start: int, end: int, req: Request, body) -> Response:
        headers = {**self.object_headers(meta), "Content-Length": str(end - start)}
        status = 200
        if (start, end) != (0, meta.size):
            status = 206
            headers["Content-Range"] = content_range(start, end, meta.size)
        return Response(body if req.method != "HEAD" else b"", status=status, headers=headers, direct_passthrough=True)

    def graph(self, req: Request, name: str) -> Response:
        dot = to_dot(name, self.node.edges(name))
        fmt = req.args.get("format", "dot")
        if fmt == "dot":
            return Response(dot, mimetype="text/vnd.graphviz")
        if fmt not in FORMATS:
            raise Invalid(f"unknown graph format {fmt!r}: use dot, svg or png")
        return Response(render(dot, fmt), mimetype=FORMATS[fmt])
