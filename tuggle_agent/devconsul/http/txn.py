"""The transaction endpoint (`PUT /v1/txn`), KV operations only.

As Consul's agent/txn_endpoint.go and agent/consul/txn_endpoint.go: the body
is a JSON list of `{"KV": {"Verb", "Key", "Value" (base64), "Flags", "Index",
"Session"}}`; more than 128 ops or a body over txn_max_req_len is 413. Before
anything is applied every op is checked (kvsPreApply): a key is required
except for delete-tree, delete-tree needs write on everything under its
prefix, check-index/check-session need key:read, get/get-tree are filtered on
the way out, every other verb needs key:write. Any failed check or op answers
409 `{"Results": null, "Errors": [{"OpIndex", "What"}]}` and nothing is
changed; success is 200 `{"Results": [{"KV": entry}], "Errors": null}`, where
only get/get-tree entries carry their Value. Node, service, check and session
ops are not implemented here (400 says so).
"""

from __future__ import annotations

import base64
import binascii
import json

from ..codec import go_json
from ..errors import PermissionDenied
from ..state import kv_txn
from ..state.acl_rules import READ, WRITE
from ..state.kv_txn import KVOp
from .kv import MAX_VALUE_SIZE
from .request import HTTPError, Request, Response, Routes, meta

MAX_TXN_OPS = 128  # maxTxnOps since Consul 1.7 (64 before)
MAX_TXN_LEN = 512 * 1024  # txn_max_req_len default
_TOO_LARGE_DOC = "https://www.consul.io/docs/agent/config/config-files#txn_max_req_len"
_CHECKED_BY_READ = frozenset({"check-index", "check-session"})

routes = Routes()


@routes.add("/v1/txn", "PUT")
def txn_endpoint(req: Request) -> Response:
    req.check_dc()
    if len(req.body) > MAX_TXN_LEN:
        raise HTTPError(
            413, f"Request body({len(req.body)} bytes) too large, max size: {MAX_TXN_LEN} bytes. See {_TOO_LARGE_DOC}."
        )
    ops = _parse(req.body)
    if len(ops) > MAX_TXN_OPS:
        raise HTTPError(413, f"Transaction contains too many operations ({len(ops)} > {MAX_TXN_OPS})")
    authz = req.authz
    errors = [(i, what) for i, op in enumerate(ops) if (what := _pre_check(req, op))]
    results: list = []
    if not errors:
        kv = req.agent.kv
        with req.agent.store.write() as txn:
            results, errors = kv_txn.apply(kv, txn, ops)
    if errors:
        body = {"Results": None, "Errors": [{"OpIndex": i, "What": what} for i, what in errors]}
        return Response(409, go_json(body).encode(), {"Content-Type": "application/json"})
    out = []
    for entry, with_value in results:
        if authz.can("key", entry.key, READ):  # Consul filters every KV result by key:read
            api = entry.to_api()
            if not with_value:
                api["Value"] = None
            out.append({"KV": api})
    writes = any(op.verb in kv_txn.WRITE_VERBS for op in ops)
    # A read-only transaction is served like a read (Txn.Read): leader metadata, no index.
    headers = {"Content-Type": "application/json", **({} if writes else meta(None))}
    return Response(200, go_json({"Results": out, "Errors": None}).encode(), headers)


def _parse(body: bytes) -> list[KVOp]:
    try:
        raw = json.loads(body) if body.strip() else []
    except ValueError as err:
        raise HTTPError(400, f"Failed to parse body: {err}") from err
    if not isinstance(raw, list):
        raise HTTPError(400, "Failed to parse body: json: cannot unmarshal object into Go value of type api.TxnOps")
    return [_op(item) for item in raw]


def _op(item: object) -> KVOp:
    fields = {k.lower(): v for k, v in item.items()} if isinstance(item, dict) else {}
    if set(fields) - {"kv"}:
        raise HTTPError(400, "tuggle-agent devconsul implements only KV operations in /v1/txn")
    kv = fields.get("kv")
    if not isinstance(kv, dict):
        return KVOp("", "")  # no operation: reported at its index like Consul's dispatch
    f = {k.lower(): v for k, v in kv.items()}
    value = f.get("value")
    if value is None:
        data = b""
    elif isinstance(value, str):
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as err:
            raise HTTPError(400, f"Failed to parse body: failed to decode value: {err}") from err
    else:
        raise HTTPError(400, f"Failed to parse body: unexpected value type: {type(value).__name__}")
    key = f.get("key") or ""
    if len(data) > MAX_VALUE_SIZE:
        raise HTTPError(413, f'Value for key "{key}" is too large ({len(data)} > {MAX_VALUE_SIZE} bytes)')
    flags, index = f.get("flags") or 0, f.get("index") or 0
    verb, session = f.get("verb") or "", f.get("session") or ""
    if not all(isinstance(v, str) for v in (verb, key, session)):
        raise HTTPError(400, "Failed to parse body: Verb, Key and Session must be strings")
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**64 for v in (flags, index)):
        raise HTTPError(400, "Failed to parse body: Flags and Index must be uint64")
    return KVOp(verb, key, data, flags, index, session)


def _pre_check(req: Request, op: KVOp) -> str:
    """kvsPreApply: what is wrong with `op` before anything is applied ("" if nothing)."""
    if not op.verb:
        return "no operation specified"
    if not op.key and op.verb != "delete-tree":
        return "Must provide key"
    authz = req.authz
    if op.verb == "delete-tree":
        try:
            authz.require_key_write_prefix(op.key)
        except PermissionDenied as err:
            return str(err)
        return ""
    if op.verb in ("get", "get-tree"):
        return ""  # filtered on the way out
    wanted = READ if op.verb in _CHECKED_BY_READ else WRITE
    return "" if authz.can("key", op.key, wanted) else authz.denial("key", op.key, wanted)
