"""Object metadata, piece digests and fetch-graph edges in Consul KV.

Layout (compatible with the Go tuggle, `<ns>` = namespace):
  <ns>/<name>                      JSON metadata (tuggle's fields + sha256, version, ...)
  <ns>.pieces/<name>/<version>     JSON piece digests, written before the metadata
  <ns>.graph/<name>/<from>/<to>    one edge per completed fetch
  <ns>.relay/<name>/<version>/<node>   partial holders (see relay.py)
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import consul

from ..objects.metadata import ObjectMeta, PieceList
from .client import consul_errors


@dataclass
class Edge:
    source: str
    target: str
    start: float
    end: float
    elapsed: float


class ObjectsKV:
    def __init__(self, client: consul.Consul, namespace: str):
        self.c = client
        self.ns = namespace

    def key(self, name: str) -> str:
        return f"{self.ns}/{name}"

    # -- metadata ---------------------------------------------------------
    def get(self, name: str) -> ObjectMeta | None:
        return self.get_with_index(name)[0]

    def get_with_index(self, name: str) -> tuple[ObjectMeta | None, int]:
        with consul_errors(self.c, f"reading metadata of {name}"):
            _, entry = self.c.kv.get(self.key(name))
        if entry is None or entry.get("Value") is None:
            return None, 0
        return ObjectMeta.from_json(entry["Value"]), int(entry["ModifyIndex"])

    def list(self) -> list[ObjectMeta]:
        with consul_errors(self.c, "listing objects"):
            _, entries = self.c.kv.get(self.ns + "/", recurse=True)
        return [m for m in (ObjectMeta.from_entry(e) for e in entries or []) if m is not None]

    def create(self, meta: ObjectMeta, pieces: PieceList) -> bool:
        """Store a new object; False if the name is taken (cas=0 makes two PUTs race-free)."""
        pieces_key = f"{self.ns}.pieces/{meta.name}/{meta.version}"
        with consul_errors(self.c, f"storing metadata of {meta.name}"):
            self.c.kv.put(pieces_key, pieces.to_json())
            if self.c.kv.put(self.key(meta.name), meta.to_json(), cas=0):
                return True
            self.c.kv.delete(pieces_key)
            return False

    def update(self, meta: ObjectMeta, modify_index: int) -> bool:
        with consul_errors(self.c, f"updating metadata of {meta.name}"):
            return bool(self.c.kv.put(self.key(meta.name), meta.to_json(), cas=modify_index))

    def delete(self, meta: ObjectMeta) -> None:
        """Metadata first: from that moment every node answers 404 for the name."""
        with consul_errors(self.c, f"deleting {meta.name}"):
            self.c.kv.delete(self.key(meta.name))
            self.c.kv.delete(f"{self.ns}.pieces/{meta.name}/", recurse=True)
            self.c.kv.delete(f"{self.ns}.graph/{meta.name}/", recurse=True)
            self.c.kv.delete(f"{self.ns}.relay/{meta.name}/", recurse=True)

    def pieces(self, meta: ObjectMeta) -> PieceList | None:
        with consul_errors(self.c, f"reading piece digests of {meta.name}"):
            _, entry = self.c.kv.get(f"{self.ns}.pieces/{meta.name}/{meta.version}")
        if entry is None or entry.get("Value") is None:
            return None
        return PieceList.from_json(entry["Value"])

    # -- graph ------------------------------------------------------------
    def add_edge(self, name: str, edge: Edge) -> None:
        value = json.dumps({"from": edge.source, "to": edge.target, "start": edge.start,
                            "end": edge.end, "elapsed": edge.elapsed})
        with consul_errors(self.c, f"recording graph edge of {name}"):
            self.c.kv.put(f"{self.ns}.graph/{name}/{edge.source}/{edge.target}", value.encode())

    def edges(self, name: str) -> list[Edge]:
        with consul_errors(self.c, f"reading graph of {name}"):
            _, entries = self.c.kv.get(f"{self.ns}.graph/{name}/", recurse=True)
        edges = []
        for e in entries or []:
            try:
                d = json.loads(e["Value"])
                edges.append(Edge(d["from"], d["to"], float(d["start"]), float(d["end"]), float(d["elapsed"])))
            except (TypeError, ValueError, KeyError):
                continue
        return edges
