"""The web UI paths: Consul redirects `/` to `/ui/`; the dev agent has no UI
but answers there, so HTTP checks pointed at the agent root pass as they do
against a real agent."""

from __future__ import annotations

from .request import Request, Response, Routes

routes = Routes()

PAGE = (
    b"<!doctype html><title>Consul</title><p>tuggle-agent devconsul has no web UI; use the HTTP API under /v1/.</p>\n"
)


@routes.add("/", "GET", "HEAD")
def root(req: Request) -> Response:
    return Response(
        301,
        b'<a href="/ui/">Moved Permanently</a>.\n',
        {"Location": "/ui/", "Content-Type": "text/html; charset=utf-8"},
    )


@routes.add("/ui/", "GET", "HEAD")
def ui(req: Request) -> Response:
    return Response(200, PAGE, {"Content-Type": "text/html; charset=utf-8"})
