"""The access log and the request metrics: a WSGI middleware around the whole app.

One line per request on logger `tuggle_agent.access`, written when the server closes
the response body, so the bytes and the duration are those of the whole transfer (a
client that hangs up mid-body is logged with the bytes it got):

    GET /test.gz 200 8764510B 1.234s 10.0.0.7 client

With `log_format: json` the same facts are fields of the record (method, path, status,
bytes, duration, client, internal, route).  `internal` is true for peer requests
(X-Tuggle-Internal).  Metrics count requests by route *name* (the endpoint of
front/app.py's ROUTES, never the raw path) and a bounded set of methods, so a client
cannot create label values at will.

Local files sent with sendfile() (front/server.py's FileWrapper) keep that path: the
wrapper is recognised by type, and the bytes sent are read from the file position,
which socket.sendfile() advances even when it fails part way.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from werkzeug.exceptions import HTTPException

from .. import metrics
from ..engine.peer import INTERNAL_HEADER
from .app import ROUTES
from .server import FileWrapper

log = logging.getLogger("tuggle_agent.access")

METHODS = frozenset({"GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS"})
_INTERNAL_ENV = "HTTP_" + INTERNAL_HEADER.upper().replace("-", "_")


def route_of(environ: dict) -> str:
    """The route's endpoint name, or "unmatched" (no route, or a method the route refuses)."""
    try:
        endpoint, _ = ROUTES.bind_to_environ(environ).match()
    except HTTPException:
        return "unmatched"
    return str(endpoint)


class _Request:
    """What one request's log line and metrics need, filled in as the response goes out."""

    def __init__(self, environ: dict):
        self.started = time.monotonic()
        self.method = environ.get("REQUEST_METHOD", "")
        query = environ.get("QUERY_STRING", "")
        self.path = environ.get("PATH_INFO", "") + (f"?{query}" if query else "")
        self.client = environ.get("REMOTE_ADDR", "")
        self.internal = _INTERNAL_ENV in environ
        self.route = route_of(environ)
        self.status = 0
        self.bytes = 0
        self.done = False

    def finish(self) -> None:
        if self.done:
            return
        self.done = True
        duration = time.monotonic() - self.started
        method = self.method if self.method in METHODS else "other"
        metrics.REQUESTS.labels(self.route, method, str(self.status)).inc()
        metrics.REQUEST_SECONDS.labels(self.route).observe(duration)
        log.info(
            "%s %s %d %dB %.3fs %s %s",
            self.method,
            self.path,
            self.status,
            self.bytes,
            duration,
            self.client,
            "internal" if self.internal else "client",
            extra={
                "method": self.method,
                "path": self.path,
                "status": self.status,
                "bytes": self.bytes,
                "duration": round(duration, 6),
                "client": self.client,
                "internal": self.internal,
                "route": self.route,
            },
        )


class _CountedFile(FileWrapper):
    """The server's sendfile-capable wrapper, also reporting the bytes it sent on close."""

    request: _Request | None = None

    def __init__(self, filelike, blksize: int = 8192):
        super().__init__(filelike, blksize)
        self.start = filelike.tell() if hasattr(filelike, "tell") else 0

    def close(self) -> None:
        if self.request is not None:
            with contextlib.suppress(OSError, ValueError):  # not seekable, or already closed
                self.request.bytes = self.filelike.tell() - self.start
        super().close()
        if self.request is not None:
            self.request.finish()


class _CountedBody:
    """A response body that counts what is taken from it and logs when closed."""

    def __init__(self, body: Iterable[bytes], request: _Request):
        self.body = body
        self.request = request

    def __iter__(self) -> Iterator[bytes]:
        head = self.request.method == "HEAD"  # the server sends no body, whatever the app yields
        for chunk in self.body:
            if not head:
                self.request.bytes += len(chunk)
            yield chunk

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            self.request.finish()


class AccessLog:
    """`AccessLog(app)`: the app, with one access-log line and metric update per request."""

    def __init__(self, app: Callable[..., Any]):
        self.app = app

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = _Request(environ)
        if environ.get("wsgi.file_wrapper") is FileWrapper:
            environ["wsgi.file_wrapper"] = _CountedFile

        def start(status: str, headers: list, exc_info: Any = None) -> Callable[[bytes], Any]:
            request.status = int(status.split(" ", 1)[0])
            write = start_response(status, headers, exc_info)

            def counted_write(data: bytes) -> Any:
                request.bytes += len(data)
                return write(data)

            return counted_write

        try:
            body = self.app(environ, start)
        except BaseException:
            request.status = request.status or 500
            request.finish()
            raise
        if isinstance(body, _CountedFile) and request.method != "HEAD":
            body.request = request
            return body
        return _CountedBody(body, request)
