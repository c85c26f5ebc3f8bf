"""The HTTP server around the app: waitress, bound before the node joins Consul.

The listening socket is taken first, so a busy port fails `serve` before anything is
registered in Consul (an earlier version registered first and re-pointed the node's
service at a port another process held).  Until the node is built, every request is
answered 503 "starting" -- Consul's check of /?ping stays critical, so no peer is sent
here early.

waitress handles sockets in one asyncore loop and hands complete requests to a thread
pool, so idle and half-open connections cost no thread; `connection_limit` and
`idle_timeout` bound them explicitly (nginx-like defaults, config keys).
"""

from __future__ import annotations

import waitress
from werkzeug.wrappers import Response

from ..config import Config


class LateApp:
    """The WSGI app of a node still starting: 503 until `app` is set."""

    def __init__(self):
        self.app = None

    def __call__(self, environ, start_response):
        if self.app is None:
            return Response(
                "tuggle-agent is starting\n", status=503, mimetype="text/plain", headers={"Retry-After": "1"}
            )(environ, start_response)
        return self.app(environ, start_response)


def make_server(cfg: Config, app):
    """Bind the listening socket now (OSError if the port is taken) and return the server."""
    return waitress.create_server(
        app,
        host=cfg.bind,
        port=cfg.port,
        threads=cfg.threads,
        # Our own check (max_upload_size) refuses oversized uploads with a message; waitress's
        # limit is a backstop one byte above it, so a body of exactly max_upload_size is accepted.
        max_request_body_size=cfg.max_upload_size + 1,
        channel_timeout=int(cfg.idle_timeout),
        connection_limit=cfg.connection_limit,
        ident="tuggle-agent",
        # 8 KiB recv() calls cost more CPU than hashing and writing a big upload.
        recv_bytes=256 * 1024,
    )
