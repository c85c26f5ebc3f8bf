"""Planting objects that exist before the agents start (tests and bench/consul_load.py):
each object's metadata and piece list in KV and real local copies, with sidecars, on
the nodes chosen to hold it -- as earlier rollouts would have left them.

KV is written through `PUT /v1/txn`, 32 objects (64 keys) per transaction: planting
10 000 objects one key at a time, plus a change-log append each, was most of a
bench run.  Only the last changelog.LENGTH objects are appended to the change-log
(through the product's ObjectsKV.log_change): the bounded log would hold no more, and
it ends up as ObjectsKV.create would have left it.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from ..consul.keys import Keys
from ..consul.kv import ObjectsKV
from ..engine.store import LocalStore
from ..objects import changelog
from ..objects.metadata import ObjectMeta, PieceList, piece_size_for
from ..objects.verify import Digester

if TYPE_CHECKING:
    from .cluster import TuggleCluster

OBJECTS_PER_TXN = 32  # two keys each: 64 ops, within every Consul version's limit


def _op(verb: str, key: str, value: bytes) -> dict:
    return {"KV": {"Verb": verb, "Key": key, "Value": base64.b64encode(value).decode(), "Index": 0}}


def plant_objects(
    c: TuggleCluster, count: int, holders: Callable[[int], Iterable[str]], ns: str = "tuggle", prefix: str = "old-"
) -> list[ObjectMeta]:
    """`count` small objects `<prefix>NNNNN.bin`; object i is held by the nodes holders(i)."""
    keys = Keys(ns)
    consul = c.consul("node1")
    stores = {name: LocalStore(c.workdir / name / "data") for name in c.names()}
    planted: list[ObjectMeta] = []
    ops: list[dict] = []
    for i in range(count):
        body = (f"object {i} " * 100).encode()
        piece = piece_size_for(len(body))
        d = Digester(piece)
        d.update(body)
        sha, digests = d.finish()
        meta = ObjectMeta(name=f"{prefix}{i:05d}.bin", size=len(body), sha256=sha, piece_size=piece)
        planted.append(meta)
        # cas with index 0: the name must be free, as ObjectsKV.create requires
        ops += [_op("set", keys.pieces(meta.name, meta.version), PieceList(piece, digests).to_json())]
        ops += [_op("cas", keys.meta(meta.name), meta.to_json())]
        if len(ops) == 2 * OBJECTS_PER_TXN or i == count - 1:
            answer = consul.txn.put(ops)  # raises on a 409: a planted name was taken
            assert answer and not answer.get("Errors"), answer
            ops = []
        for name in holders(i):
            temp, f = stores[name].temp_file(meta.name, "plant")
            with f:
                f.write(body)
            stores[name].commit(temp, meta, "plant")
    objects = ObjectsKV(consul, ns)
    for meta in planted[-changelog.LENGTH :]:
        objects.log_change("put", meta.name, meta.version)
    return planted
