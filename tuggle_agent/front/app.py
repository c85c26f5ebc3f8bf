"""The HTTP front (WSGI, served by waitress): the Go tuggle's API plus a few extras.

  GET /                 objects in the cluster (JSON)       GET /?ping   health check
  GET /_tuggle/metrics  Prometheus metrics (under /_tuggle/: no object name can collide)
  PUT /<name>[?sync]    store; 201 / 409 if the name exists
  GET|HEAD /<name>      local copy, or fetched from the nearest holder while streaming
  DELETE /<name>        cluster-wide delete
  GET /<name>?graph[&format=svg|png]   who fetched from whom
  POST /<name>?sync     (re-)sync an existing object to every (matching) node
  POST /_tuggle/watch   Consul watch results (from handle-event or an http watch handler)
  /_tuggle/...          other node-local control (write_allow only; /_tuggle/status is open)

Werkzeug does the HTTP details (Range, If-None-Match, If-Modified-Since) for local
files; streams of in-flight fetches honour a single byte range themselves.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re

from werkzeug.exceptions import HTTPException, RequestedRangeNotSatisfiable
from werkzeug.http import parse_range_header
from werkzeug.utils import send_file
from werkzeug.wrappers import Request, Response

from .. import metrics
from ..consul.client import ConsulUnavailable
from ..engine.download import DownloadFailed
from ..engine.fetcher import INTERNAL_HEADER
from .graph import FORMATS, DotMissing, render, to_dot
from ..objects.metadata import DEFAULT_CONTENT_TYPE, ObjectMeta
from ..objects.names import BadName, check_name
from ..engine.node import Node, UploadError, sync_spec
from ..watches.input import BadInput, parse_watch_body

log = logging.getLogger(__name__)


class Refused(Exception):
    """A request we answer with `status` and a plain-text explanation."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def text(body: str, status: int, **headers) -> Response:
    return Response(body.rstrip("\n") + "\n", status=status, mimetype="text/plain", headers=headers)


def as_json(data, status: int = 200) -> Response:
    return Response(json.dumps(data, indent=1) + "\n", status=status, mimetype="application/json")


class TuggleApp:
    def __init__(self, node: Node):
        self.node = node
        self.cfg = node.cfg

    def __call__(self, environ, start_response):
        request = Request(environ)
        try:
            response = self.dispatch(request)
        except HTTPException as exc:
            response = exc.get_response(environ)
        except ConsulUnavailable as exc:
            log.error("%s %s: %s", request.method, request.path, exc)
            response = text(str(exc), 503)
        except Refused as exc:
            response = text(str(exc), exc.status)
        return response(environ, start_response)

    # -- routing --------------------------------------------------------------
    def dispatch(self, req: Request) -> Response:
        path = req.path
        if path == "/":
            if req.method not in ("GET", "HEAD"):
                return text("use GET / to list objects", 405, Allow="GET, HEAD")
            if "ping" in req.args:
                return text("pong", 200)
            return as_json([m.to_dict() for m in sorted(self.node.kv.list(), key=lambda m: m.name)])
        if path.startswith("/_tuggle/"):
            return self.control(req, path[len("/_tuggle/"):])
        name = path[1:]
        try:
            check_name(name)
        except BadName as exc:
            return text(str(exc), 400)
        if req.method in ("PUT", "DELETE", "POST") and not self.write_allowed(req):
            return self.forbidden(req)
        if req.method == "PUT":
            return self.put(req, name)
        if req.method == "POST" and "sync" in req.args:
            return self.resync(req, name)
        if req.method == "DELETE":
            meta = self.node.delete(name)
            return text(f"deleted {name}", 200) if meta else text(f"{name} not found", 404)
        if req.method in ("GET", "HEAD"):
            return self.get(req, name)
        return text(f"method {req.method} not allowed on /{name}", 405, Allow="GET, HEAD, PUT, DELETE, POST")

    def write_allowed(self, req: Request) -> bool:
        return self.cfg.allows_write_from(req.remote_addr or "")

    def forbidden(self, req: Request) -> Response:
        return text(f"{req.method} from {req.remote_addr} refused: writes are allowed only from the addresses "
                    f"in the write_allow setting ({', '.join(map(str, self.cfg.write_allow))})", 403)

    # -- writes ---------------------------------------------------------------
    def put(self, req: Request, name: str) -> Response:
        if self.cfg.fetch_only:
            return text(f"this node is fetch-only (fetch_only: true): PUT {name} on a node that accepts uploads", 405,
                        Allow="GET, HEAD")
        ctype = req.headers.get("Content-Type") or DEFAULT_CONTENT_TYPE
        length = req.content_length
        stream = req.environ["wsgi.input"]
        sync = self.sync_filters(req) if "sync" in req.args else None
        try:
            meta = self.node.upload(name, stream, length, ctype, sync and sync_spec(**sync))
        except UploadError as exc:
            return text(str(exc), exc.status)
        resp = text(f"stored {name}: {meta.size} bytes, sha256 {meta.sha256}", 201)
        resp.headers["ETag"] = f'"{meta.etag}"'
        resp.headers["X-Tuggle-Object-Id"] = meta.id
        return resp

    @staticmethod
    def sync_filters(req: Request) -> dict:
        """?sync's node/service/tag regexes, with Consul's own rules for event filters."""
        filters = {k: req.args.get(k, "") for k in ("node", "service", "tag")}
        if filters["tag"] and not filters["service"]:
            raise Refused("a tag filter needs a service filter too (as in Consul events)", 400)
        for key, pattern in filters.items():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise Refused(f"?{key}={pattern!r} is not a valid regular expression: {exc}", 400) from None
        return filters

    def resync(self, req: Request, name: str) -> Response:
        meta = self.node.sync(name, **self.sync_filters(req))
        return text(f"sync of {name} requested", 202) if meta else text(f"{name} not found", 404)

    # -- reads ----------------------------------------------------------------
    def object_headers(self, meta: ObjectMeta) -> dict:
        return {"Content-Type": meta.content_type, "Last-Modified": meta.last_modified,
                "X-Tuggle-Object-Id": meta.id, "ETag": f'"{meta.etag}"', "Accept-Ranges": "bytes"}

    def get(self, req: Request, name: str) -> Response:
        if "graph" in req.args:
            return self.graph(req, name)
        meta = self.node.kv.get(name)
        if meta is None:
            return text(f"{name} not found", 404)
        internal = INTERNAL_HEADER in req.headers
        local = self.node.store.get(name)
        if local is not None and local.meta.version == meta.version:
            if internal:
                return self.serve_to_peer(req, meta, local.path)
            resp = send_file(str(local.path), req.environ, mimetype=meta.content_type, etag=meta.etag,
                             last_modified=meta.created, conditional=True, max_age=None)
            resp.headers["X-Tuggle-Object-Id"] = meta.id
            return resp
        if req.method == "HEAD":
            return Response(status=200, headers={**self.object_headers(meta), "Content-Length": str(meta.size)})
        if internal:
            # Peers are served from local bytes only, never by starting a fetch for them;
            # with pipelined relay that includes the verified part of a fetch in progress.
            d = self.node.fetcher.active(name) if self.cfg.pipelined else None
            if d is not None and d.meta.version == meta.version:
                start, end = self.byte_range(req, meta.size)
                return self.ranged_response(meta, start, end, req, self.to_peer(d.read(start, end)))
            return text(f"{name} is not held on this node", 404)
        return self.stream_fetch(req, meta)

    def serve_to_peer(self, req: Request, meta: ObjectMeta, path) -> Response:
        """A complete local copy to a peer; a whole read re-checks our copy on the way."""
        start, end = self.byte_range(req, meta.size)
        whole = (start, end) == (0, meta.size) and self.cfg.verify_on_serve

        def chunks():
            h = hashlib.sha256()
            with open(path, "rb") as f:
                f.seek(start)
                pos = start
                while pos < end and (block := f.read(min(256 * 1024, end - pos))):
                    pos += len(block)
                    if whole:
                        h.update(block)
                    yield block
            if whole and h.hexdigest() != meta.sha256:
                self.node.quarantine(meta, "its bytes no longer match their SHA-256 (changed on disk?)")

        return self.ranged_response(meta, start, end, req, self.to_peer(chunks()))

    def to_peer(self, chunks):
        """Bytes for peers pass the node-wide serve_rate bucket."""
        for block in chunks:
            self.node.serve_bucket.take(len(block))
            metrics.SERVED_BYTES.inc(len(block))
            yield block

    def byte_range(self, req: Request, size: int) -> tuple[int, int]:
        rng = parse_range_header(req.headers.get("Range"))
        if rng is None or len(rng.ranges) != 1:
            return 0, size
        bounds = rng.range_for_length(size)
        if bounds is None:
            raise RequestedRangeNotSatisfiable(length=size)
        return bounds

    def ranged_response(self, meta: ObjectMeta, start: int, end: int, req: Request, body) -> Response:
        headers = {**self.object_headers(meta), "Content-Length": str(end - start)}
        status = 200
        if (start, end) != (0, meta.size):
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{meta.size}"
        return Response(body if req.method != "HEAD" else b"", status=status, headers=headers,
                        direct_passthrough=True)

    def stream_fetch(self, req: Request, meta: ObjectMeta) -> Response:
        start, end = self.byte_range(req, meta.size)
        download = self.node.prefetch(meta)
        if download is None:  # landed between our checks
            return self.get(req, meta.name)
        try:
            download.wait_started(self.cfg.fetch_timeout)
        except DownloadFailed as exc:
            return text(str(exc), exc.status)
        return self.ranged_response(meta, start, end, req, download.read(start, end))

    def graph(self, req: Request, name: str) -> Response:
        if self.node.kv.get(name) is None:
            return text(f"{name} not found", 404)
        dot = to_dot(name, self.node.kv.edges(name))
        fmt = req.args.get("format", "dot")
        if fmt == "dot":
            return Response(dot, mimetype="text/vnd.graphviz")
        if fmt not in FORMATS:
            return text(f"unknown graph format {fmt!r}: use dot, svg or png", 400)
        try:
            return Response(render(dot, fmt), mimetype=FORMATS[fmt])
        except DotMissing as exc:
            return text(str(exc), 501)

    # -- node-local control -----------------------------------------------------
    def control(self, req: Request, what: str) -> Response:
        if what == "status" and req.method == "GET":
            return as_json(self.node.status())
        if what == "metrics" and req.method == "GET":
            body, ctype = metrics.exposition()
            return Response(body, content_type=ctype)
        if what.startswith("verify/") and req.method == "POST":
            # Open to peers: a fetcher that got bad bytes from us asks us to re-check our copy.
            name = what[len("verify/"):]
            try:
                check_name(name)
            except BadName as exc:
                return text(str(exc), 400)
            started = self.node.verify_later(name)
            return text(f"verification of {name} {'started' if started else 'not needed'}", 202)
        if not self.write_allowed(req):
            return self.forbidden(req)
        if req.method != "POST":
            return text("control endpoints take POST", 405, Allow="POST")
        if what == "reconcile":
            return as_json(self.node.reconcile())
        if what == "watch":
            # The body of a Consul watch: from `handle-event`, or from Consul's http handler.
            try:
                data, kind = parse_watch_body(req.get_data())
            except BadInput as exc:
                return text(f"not a Consul watch result: {exc}; nothing was changed", 400)
            return as_json(self.node.on_watch(data, kind))
        return text(f"unknown control endpoint /_tuggle/{what}", 404)
