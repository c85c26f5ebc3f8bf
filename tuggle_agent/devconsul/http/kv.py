"""KV endpoints (`/v1/kv/`): key validation, flags, body size limit, and
the 404-with-index answers of Consul's KVS handler.

ACLs as the KVS endpoint applies them: reading one key needs key:read (403
otherwise, whether or not the key exists); a listing (?recurse, ?keys) drops
the keys the token may not read and answers 404 when none is left -- so an
unreadable prefix looks empty, not forbidden; writes need key:write, and a
recursive delete needs write on every rule under the prefix.
"""

from __future__ import annotations

from ..state.acl_rules import READ, WRITE
from ..state.kv import fold_keys, topic
from ..state.store import Interest
from .request import HTTPError, Request, Response, Routes, meta

MAX_VALUE_SIZE = 512 * 1024  # kv_max_value_size default
_TOO_LARGE_DOC = "https://developer.hashicorp.com/docs/agent/config/config-files#kv_max_value_size"

routes = Routes()


def _validate_key(key: str) -> None:
    """The relaxed key validation of Consul 1.21.6+/1.22."""
    if key.startswith("/"):
        raise HTTPError(400, "key must not begin with a '/'")
    if "../" in key or "..\\" in key or key == "..":
        raise HTTPError(400, "key contains path traversal sequence")
    if key != key.strip():
        raise HTTPError(400, "key must not have leading or trailing whitespace")


def _conflicting(req: Request, *flags: str) -> None:
    if sum(req.has(f) for f in flags) > 1:
        encoded = "&".join(f"{k}={v}" for k in sorted(req.query) for v in req.query[k])
        raise HTTPError(400, f"Conflicting flags: {encoded}\n")


@routes.add("/v1/kv/", "GET", "PUT", "DELETE")
def kv_endpoint(req: Request) -> Response:
    key = req.tail
    if key:
        _validate_key(key)
    if req.method == "GET":
        return _kv_get(req, key)
    req.check_dc()
    if req.method == "PUT":
        return _kv_put(req, key)
    return _kv_delete(req, key)


def _readable_under(req: Request, prefix: str):
    """A blocking-query run: the prefix's entries the token may read. The
    index stays the whole prefix's, as Consul computes it before filtering."""
    kv, authz = req.agent.kv, req.authz

    def run():
        index, entries, _ = kv.list(prefix)
        entries = req.visible(entries, lambda e: authz.can("key", e.key, READ))
        return index, entries, bool(entries)

    return run


def _kv_get(req: Request, key: str) -> Response:
    kv = req.agent.kv
    if req.has("keys"):
        separator = req.get("separator", req.get("seperator"))
        index, entries = req.blocking_read(Interest.of(prefix=topic(key)), _readable_under(req, key))
        keys = fold_keys(entries, key, separator)
        if not keys and key:
            return Response(404, headers=meta(index))
        return Response.json(keys, index=index, leader=True)
    if req.has("recurse"):
        index, entries = req.blocking_read(Interest.of(prefix=topic(key)), _readable_under(req, key))
    elif not key:
        raise HTTPError(400, "Missing key name")
    else:
        req.authz.require("key", key, READ)
        index, entry = req.blocking_read(Interest.of(topic(key)), lambda: kv.get(key))
        entries = [entry] if entry else []
    if not entries:
        return Response(404, headers=meta(index))
    if req.has("raw") and not req.has("recurse"):
        headers = {
            **meta(index),
            "Content-Type": "text/plain",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox",
        }
        return Response(200, entries[0].value, headers)
    return Response.json([e.to_api() for e in entries], index=index, leader=True)


def _kv_put(req: Request, key: str) -> Response:
    if not key:
        raise HTTPError(400, "Missing key name")
    _conflicting(req, "cas", "acquire", "release")
    flags = req.uint("flags") if req.has("flags") else 0
    if len(req.body) > MAX_VALUE_SIZE:
        raise HTTPError(
            413,
            f"Request body({len(req.body)} bytes) too large, max size: {MAX_VALUE_SIZE} bytes. See {_TOO_LARGE_DOC}.",
        )
    cas = req.uint("cas") if req.has("cas") else None
    req.authz.require("key", key, WRITE)
    kv, value = req.agent.kv, req.body
    with req.agent.store.write() as txn:
        if cas is not None:
            ok = kv.cas(txn, key, value, flags, cas)
        elif req.has("acquire"):
            ok = kv.lock(txn, key, value, flags, req.get("acquire"))
        elif req.has("release"):
            ok = kv.unlock(txn, key, value, flags, req.get("release"))
        else:
            ok = kv.set(txn, key, value, flags)
    return Response.json(ok)


def _kv_delete(req: Request, key: str) -> Response:
    _conflicting(req, "recurse", "cas")
    if req.has("recurse"):
        req.authz.require_key_write_prefix(key)
    elif not key:
        raise HTTPError(400, "Missing key name")
    else:
        req.authz.require("key", key, WRITE)
    cas = req.uint("cas") if req.has("cas") else None
    kv = req.agent.kv
    with req.agent.store.write() as txn:
        if req.has("recurse"):
            ok = kv.delete_tree(txn, key)
        elif cas is not None:
            ok = kv.delete_cas(txn, key, cas)
        else:
            ok = kv.delete(txn, key)
    return Response.json(ok)
