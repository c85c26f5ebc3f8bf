"""The HTTP server around the app: cheroot, with four small, documented extensions.

Why not waitress (the server this project started with): waitress receives a whole
request body -- spooled to TMPDIR -- before the application runs.  A PUT refused on
its request line and headers (403, 409, 400, 405, 413) was answered only after
hundreds of MB had arrived, and an accepted body was written twice (spool, then our
copy).  And its worker threads block on slow readers of streamed (iterator) bodies,
so 70 slow readers of peer responses took /?ping down.  cheroot (CherryPy's server,
maintained) hands the application the socket as `wsgi.input` as soon as the headers
are in, and its selector keeps idle keep-alive connections without a thread.
Measured in one run on this machine (README "Reliability", bench/server_bench.py).

The extensions (each a few lines over a documented cheroot hook), and `wsgi.input` with
`readinto()` for bodies with a Content-Length (KnownLengthBody):

1. No drain on refusal (`Request.send_headers`).  cheroot reads the rest of an unread
   body before answering so it can keep the connection; for more than 64 KiB we close
   the connection instead, so a refused upload costs the client at most what is in
   flight, not the whole body.
2. Lingering close (`Connection.close`): after such a refusal we send FIN and discard
   what the client still sends, briefly and boundedly (nginx's lingering_close), so
   the client reads our answer instead of a connection reset.
3. Headers first (`Server.process_conn`): a connection goes to a worker thread only
   once its request headers are complete; until then it waits in the selector (with
   `idle_timeout` as deadline), so 300 half-open or half-sent connections hold no
   thread and /?ping keeps answering.
4. sendfile (`Gateway.respond`): `wsgi.file_wrapper` sends local files with
   socket.sendfile(), zero-copy, so a local GET keeps pace with nginx; a wrapped object
   with `sendfile_spans()` (a peer's body, engine/reads.py PeerFile) is sent span by span
   with os.sendfile() -- spans of a fetch in progress as they are verified.

The socket is bound by `make_server` (prepare), before the node joins Consul: a busy
port fails `serve` before anything is registered.  Until the node is built, requests
are answered 503 "starting" (LateApp).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import selectors
import socket
import time

from cheroot import server as cserver
from cheroot import wsgi as cwsgi
from werkzeug.wrappers import Response

from ..config import Config

log = logging.getLogger(__name__)

DRAIN_MAX = 64 * 1024  # an unread body up to this size is read to keep the connection alive
LINGER_SECONDS = 2.0  # after a refusal: FIN, then discard the client's bytes this long at most
LINGER_BYTES = 1 << 20
MAX_HEADER = 64 * 1024


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


class FileWrapper:
    """wsgi.file_wrapper: recognised by Gateway.respond and sent with sendfile()."""

    def __init__(self, filelike, blksize: int = 8192):
        self.filelike = filelike
        self.blksize = max(blksize, 256 * 1024)

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        data = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration

    def close(self) -> None:
        if hasattr(self.filelike, "close"):
            self.filelike.close()


def send_span(sock: socket.socket, fd: int, offset: int, count: int) -> None:
    """sendfile() `count` bytes of `fd` from `offset` (socket.sendfile()'s loop, for an fd
    that is not a file object); OSError if the socket stays unwritable for its timeout or
    the file is shorter than the span."""
    timeout = sock.gettimeout()
    poller = None
    while count:
        try:
            sent = os.sendfile(sock.fileno(), fd, offset, count)
        except BlockingIOError:  # a socket with a timeout is non-blocking underneath
            if poller is None:
                poller = select.poll()
                poller.register(sock, select.POLLOUT)
            if not poller.poll(None if timeout is None else timeout * 1000):
                raise TimeoutError("the peer stopped reading") from None
            continue
        if sent == 0:
            raise OSError(f"file ended {count} bytes before the span it was to send")
        offset += sent
        count -= sent


class Request(cserver.HTTPRequest):
    def send_headers(self):
        if self.chunked_read:
            unread = not getattr(self.rfile, "closed", False)
        else:
            unread = getattr(self.rfile, "remaining", 0) > DRAIN_MAX
        if unread:
            # Answering before the body was read (a refusal): close, don't drain it.
            self.close_connection = True
            self.conn.unread_body = True
        super().send_headers()


class Connection(cserver.HTTPConnection):
    RequestHandlerClass = Request
    rbufsize = 256 * 1024  # large recv()s: small ones cost more CPU than hashing an upload
    unread_body = False

    def close(self):
        if self.unread_body:
            self.unread_body = False
            with contextlib.suppress(OSError):
                self.wfile.flush()
                self.socket.shutdown(socket.SHUT_WR)
                deadline = time.monotonic() + LINGER_SECONDS
                got = 0
                while got < LINGER_BYTES and (left := deadline - time.monotonic()) > 0:
                    self.socket.settimeout(left)
                    data = self.socket.recv(65536)
                    if not data:
                        break
                    got += len(data)
        super().close()


class KnownLengthBody(cserver.KnownLengthRFile):
    """wsgi.input of a body with a Content-Length, plus readinto(): straight from the socket
    into the caller's buffer.  cheroot's connection reader is the pure-Python
    _pyio.BufferedReader, whose read(n) zero-fills an n-byte buffer for every recv() and
    then joins the pieces: on a PUT that cost more CPU than hashing it."""

    def readinto(self, b) -> int:
        """Fills `b` (up to the end of the body) unless the client stops sending."""
        view = memoryview(b).cast("B")[: self.remaining]
        rf = self.rfile  # what the headers' recv() brought of the body is in its buffer
        n = min(len(view), len(rf._read_buf) - rf._read_pos)
        view[:n] = rf._read_buf[rf._read_pos : rf._read_pos + n]
        rf._read_pos += n
        # Not rf.readinto: _pyio's mis-sizes its copy when it refills its buffer mid-call.
        while n < len(view):
            got = rf.raw.readinto(view[n:])
            if not got:
                break
            n += got
        rf.bytes_read += n
        self.remaining -= n
        return n


class Gateway(cwsgi.Gateway_10):
    def get_environ(self):
        req = self.req
        if type(req.rfile) is cserver.KnownLengthRFile:  # set by HTTPRequest.respond()
            req.rfile = KnownLengthBody(req.rfile.rfile, req.rfile.remaining)
        env = super().get_environ()
        env["wsgi.file_wrapper"] = FileWrapper
        return env

    def respond(self):
        req = self.req
        response = req.server.wsgi_app(self.env, self.start_response)
        try:
            if isinstance(response, FileWrapper) and self.remaining_bytes_out is not None and req.method != b"HEAD":
                f = response.filelike
                if hasattr(f, "sendfile_spans"):
                    req.ensure_headers_sent()
                    for fd, offset, count in f.sendfile_spans():
                        send_span(req.conn.socket, fd, offset, count)
                        self.remaining_bytes_out -= count
                    return
                if hasattr(f, "fileno"):
                    req.ensure_headers_sent()
                    sent = req.conn.socket.sendfile(f, f.tell(), self.remaining_bytes_out)
                    self.remaining_bytes_out -= sent
                    return
            for chunk in filter(None, response):
                if not isinstance(chunk, bytes):
                    raise ValueError("WSGI applications must yield bytes")
                self.write(chunk)
        finally:
            req.ensure_headers_sent()
            if hasattr(response, "close"):
                response.close()


class Server(cwsgi.Server):
    ConnectionClass = Connection

    def process_conn(self, conn):
        """Hand a connection to a worker only once its request headers are complete."""
        rf = conn.rfile  # cheroot.makefile.StreamReader, a _pyio.BufferedReader
        buffered = rf._read_buf[rf._read_pos :]
        if b"\r\n\r\n" not in buffered and len(buffered) < self.max_request_header_size:
            poller = select.poll()
            poller.register(conn.socket, select.POLLIN)
            if poller.poll(0):
                try:
                    data = conn.socket.recv(65536)
                except (BlockingIOError, InterruptedError, TimeoutError):
                    data = None
                except OSError:
                    conn.close()
                    return
                if data == b"":
                    conn.close()
                    return
                if data:
                    buffered += data
                    rf._read_buf, rf._read_pos = buffered, 0
            if b"\r\n\r\n" not in buffered and len(buffered) < self.max_request_header_size:
                if conn.last_used is None:
                    conn.last_used = time.time()  # the header deadline runs from the first byte
                if self.ready:
                    self._connections._selector.register(conn.socket.fileno(), selectors.EVENT_READ, data=conn)
                else:
                    conn.close()
                return
        conn.last_used = None
        super().process_conn(conn)


def make_server(cfg: Config, app) -> Server:
    """Bind the listening socket and start the worker threads now (OSError if the port is
    taken); `serve()` runs the accept loop, `stop()` ends it."""
    server = Server(
        (cfg.bind, cfg.port),
        app,
        numthreads=cfg.threads,
        max=cfg.threads,
        server_name="tuggle-agent",
        request_queue_size=1024,
        timeout=int(cfg.idle_timeout),
        shutdown_timeout=5,
    )
    server.gateway = Gateway
    server.keep_alive_conn_limit = cfg.connection_limit
    server.max_request_header_size = MAX_HEADER
    server.max_request_body_size = 0  # the app refuses oversized uploads itself, with a message
    server.error_log = _error_log  # type: ignore[method-assign]
    server.prepare()
    return server


def _error_log(msg: str = "", level: int = logging.INFO, traceback: bool = False) -> None:
    log.log(level, "http server: %s", msg, exc_info=traceback)
