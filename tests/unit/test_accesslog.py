"""The access-log middleware on its own: what a line and the request counter record for
bodies iterated, written, refused and broken, without a server."""

import logging

import pytest
from werkzeug.test import EnvironBuilder

from tuggle_agent import metrics
from tuggle_agent.front.accesslog import AccessLog, route_of


def _environ(path="/a.bin", method="GET", **kw) -> dict:
    return EnvironBuilder(path=path, method=method, environ_base={"REMOTE_ADDR": "10.0.0.7"}, **kw).get_environ()


def _run(app, environ) -> bytes:
    got = []
    body = AccessLog(app)(environ, lambda status, headers, exc_info=None: got.append)
    try:
        return b"".join(got) + b"".join(body)
    finally:
        body.close()


def _count(route, method, status) -> float:
    return (
        metrics.REGISTRY.get_sample_value(
            "tuggle_http_requests_total", {"route": route, "method": method, "status": status}
        )
        or 0.0
    )


def _app(status="200 OK", chunks=(b"ab", b"cde"), write=b""):
    def app(environ, start_response):
        w = start_response(status, [("Content-Type", "text/plain")])
        if write:
            w(write)
        return iter(chunks)

    return app


@pytest.fixture
def access(caplog):
    caplog.set_level(logging.INFO, logger="tuggle_agent.access")
    return lambda: [r for r in caplog.records if r.name == "tuggle_agent.access"]


def test_route_names_not_paths():
    assert route_of(_environ("/x.tar.gz")) == "object"
    assert route_of(_environ("/")) == "root"
    assert route_of(_environ("/_tuggle/metrics")) == "metrics"
    assert route_of(_environ("/_tuggle/watch", method="GET")) == "unknown"  # the catch-all control route
    assert route_of(_environ("/", method="PUT")) == "unmatched"  # no route takes it


def test_one_line_with_bytes_status_client_and_kind(access):
    before = _count("object", "GET", "200")
    assert _run(_app(write=b"12"), _environ(headers={"X-Tuggle-Internal": "1"})) == b"12abcde"
    (rec,) = access()
    assert (rec.method, rec.path, rec.status, rec.bytes, rec.client, rec.internal, rec.route) == (
        "GET",
        "/a.bin",
        200,
        7,
        "10.0.0.7",
        True,
        "object",
    )
    assert rec.getMessage().startswith("GET /a.bin 200 7B ") and rec.getMessage().endswith(" 10.0.0.7 internal")
    assert _count("object", "GET", "200") == before + 1


def test_head_counts_no_body_and_odd_methods_are_bounded(access):
    _run(_app(), _environ(method="HEAD", query_string="sync"))
    before = _count("unmatched", "other", "405")
    _run(_app("405 Method Not Allowed", ()), _environ(method="BREW"))
    head, brew = access()
    assert (head.path, head.bytes, head.internal) == ("/a.bin?sync", 0, False)
    assert brew.method == "BREW" and _count("unmatched", "other", "405") == before + 1


def test_an_app_that_raises_is_logged_as_500(access):
    def broken(environ, start_response):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        AccessLog(broken)(_environ(), lambda *a: None)
    (rec,) = access()
    assert rec.status == 500 and rec.bytes == 0
