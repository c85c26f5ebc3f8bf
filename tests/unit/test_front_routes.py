"""The HTTP front on its own: one route table, one error -> status table, access rules.
A fake node stands in for the engine; no process, no socket."""

import json

import pytest
from werkzeug.test import Client

from tuggle_agent.config import load_config
from tuggle_agent.engine.node import Opened
from tuggle_agent.errors import (
    BadSources,
    Deleted,
    Exists,
    FetchOnly,
    Invalid,
    NoHolder,
    NoSpace,
    NotFound,
    TimedOut,
    TooLarge,
    Unavailable,
)
from tuggle_agent.front.app import TuggleApp, status_of
from tuggle_agent.objects.metadata import ObjectMeta
from tuggle_agent.objects.names import BadName, check_name


class FakeNode:
    def __init__(self, cfg, raise_on=None):
        self.cfg = cfg
        self.raise_on = raise_on or {}
        self.calls = []
        self.meta_ = ObjectMeta(name="a", size=5, sha256="a" * 64, version="v1")

    def _maybe_raise(self, op):
        self.calls.append(op)
        if op in self.raise_on:
            raise self.raise_on[op]

    def check_upload(self, name, length):
        check_name(name)
        self._maybe_raise("check_upload")

    def upload(self, name, body, length, ctype, sync):
        self._maybe_raise("upload")
        body.read()
        return self.meta_

    def delete(self, name):
        self._maybe_raise("delete")
        return f"deleted {name}"

    def sync(self, name, spec):
        self._maybe_raise("sync")
        self.spec = spec

    def listing(self):
        return [self.meta_]

    def listing_with_holders(self):
        return [{**self.meta_.to_dict(), "holders": 0, "no_passing_holder": True}]

    def rollout_status(self, name):
        self._maybe_raise("rollout_status")
        return {"name": name, "nodes": []}

    def open(self, name, head=False):
        self._maybe_raise("open")
        return Opened(self.meta_)

    def reconcile(self):
        self.calls.append("reconcile")
        return {"kept": 0}

    def status(self):
        return {"node": "fake"}


@pytest.fixture
def cfg(tmp_path):
    return load_config(overrides={"data_dir": str(tmp_path)}, env={})


def client(node):
    return Client(TuggleApp(node))


def call(node, method, path, addr="127.0.0.1", **kw):
    return client(node).open(path, method=method, environ_overrides={"REMOTE_ADDR": addr}, **kw)


@pytest.mark.parametrize(
    "exc,status",
    [
        (NotFound("x"), 404),
        (Deleted("x"), 404),
        (Exists("x"), 409),
        (Invalid("x"), 400),
        (BadName("x"), 400),
        (FetchOnly("x"), 405),
        (TooLarge("x"), 413),
        (NoSpace("x"), 507),
        (NoHolder("x"), 503),
        (Unavailable("x"), 503),
        (BadSources("x"), 502),
        (TimedOut("x"), 504),
    ],
)
def test_error_table(exc, status):
    assert status_of(exc) == status


def test_no_holder_answers_503_with_retry_after(cfg):
    r = call(FakeNode(cfg, {"open": NoHolder("no holder yet")}), "GET", "/a")
    assert r.status_code == 503 and r.headers["Retry-After"] and "no holder yet" in r.text


def test_ping_and_listing(cfg):
    node = FakeNode(cfg)
    assert call(node, "GET", "/?ping").text == "pong\n"
    assert json.loads(call(node, "GET", "/").text)[0]["name"] == "a"
    assert call(node, "DELETE", "/").status_code == 405


def test_status_is_a_query_flag_on_the_object_route(cfg):
    node = FakeNode(cfg)
    r = call(node, "GET", "/a?status")
    assert r.status_code == 200 and r.mimetype == "application/json" and r.json == {"name": "a", "nodes": []}
    assert call(FakeNode(cfg, {"rollout_status": NotFound("b not found")}), "GET", "/b?status").status_code == 404


def test_head_of_a_remote_object_is_answered_from_metadata(cfg):
    r = call(FakeNode(cfg), "HEAD", "/a")
    assert r.status_code == 200 and r.headers["Content-Length"] == "5" and r.headers["ETag"] == '"' + "a" * 64 + '"'


def test_writes_need_write_allow_and_are_refused_before_the_engine_is_called(cfg):
    node = FakeNode(cfg)
    for method in ("PUT", "DELETE", "POST"):
        r = call(node, method, "/a?sync", addr="10.1.2.3", data=b"x")
        assert r.status_code == 403 and "write_allow" in r.text
    assert node.calls == []
    assert call(node, "PUT", "/a", data=b"hello").status_code == 201


def test_refusal_comes_from_check_upload_before_the_body(cfg):
    node = FakeNode(cfg, {"check_upload": Exists("a already exists")})
    r = call(node, "PUT", "/a", data=b"x" * 1000)
    assert r.status_code == 409 and node.calls == ["check_upload"]


def test_fetch_only_says_what_is_allowed(cfg):
    r = call(FakeNode(cfg, {"check_upload": FetchOnly("fetch-only")}), "PUT", "/a", data=b"x")
    assert r.status_code == 405 and r.headers["Allow"] == "GET, HEAD"


def test_bad_names_are_400(cfg):
    for path in ("/.hidden", "/a/b", "/_x%20y"):
        assert call(FakeNode(cfg), "PUT", path, data=b"x").status_code == 400, path


def test_control_endpoints_answer_this_host_only_whatever_write_allow_says(tmp_path):
    cfg = load_config(overrides={"data_dir": str(tmp_path), "write_allow": ["10.0.0.0/8"]}, env={})
    node = FakeNode(cfg)
    assert call(node, "POST", "/_tuggle/reconcile", addr="10.1.2.3").status_code == 403
    assert call(node, "POST", "/_tuggle/watch", addr="10.1.2.3", data=b"null").status_code == 403
    assert node.calls == []
    assert call(node, "POST", "/_tuggle/reconcile", addr="127.0.0.1").status_code == 200
    assert call(node, "POST", "/_tuggle/reconcile", addr="::1").status_code == 200


def test_malformed_watch_payloads_are_400_and_change_nothing(cfg):
    node = FakeNode(cfg)
    for body in (b"{", b'{"a": 1}', b"[1, 2]", b'[{"Key": "x"}]'):
        r = call(node, "POST", "/_tuggle/watch", data=body)
        assert r.status_code == 400, body
    assert node.calls == []


def test_sync_filters_are_checked(cfg):
    node = FakeNode(cfg)
    assert call(node, "POST", "/a?sync&tag=web").status_code == 400  # tag needs service
    assert call(node, "POST", "/a?sync&node=(").status_code == 400
    r = call(node, "POST", "/a?sync&node=web")
    assert r.status_code == 202 and node.spec.node == "web"
    assert call(node, "POST", "/a").status_code == 405


def test_unknown_control_endpoint_is_404(cfg):
    assert call(FakeNode(cfg), "GET", "/_tuggle/nope").status_code == 404
