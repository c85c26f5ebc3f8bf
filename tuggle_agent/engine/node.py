"""One tuggle-agent node: a small facade over its parts, built complete by `Node.start`.

The HTTP front and the watch dispatcher call only this.  Each call goes to the part
that owns it:

  reads   GET for clients and peers                   engine/reads.py
  writes  PUT, DELETE, ?sync, adopt                    engine/writes.py
  keeper  reconcile, change-log, events, sync        engine/keeper.py (decisions: reconcile.py)
          retries, scrub
  fetcher one FetchJob per fetch, sources policy      engine/fetcher.py, sources.py
  copies  bytes on disk (store) and holder keys       engine/copies.py, store.py
  rollout cluster-wide ?status, holder counts         engine/rollout.py
  Consul  objects KV, service, holder index, relay   consul/
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .. import metrics
from ..config import Config
from ..consul.agent import HolderService
from ..consul.client import ConsulUnavailable, make_client_from
from ..consul.holders import HolderIndex
from ..consul.keys import Keys
from ..consul.kv import ObjectsKV
from ..consul.relay import RelayRegistry
from ..consul.semaphore import Semaphore
from ..consul.session import RenewedSession
from ..objects.edges import Edge
from ..objects.metadata import ObjectMeta, SyncSpec, now_rfc3339
from .console import Console
from .copies import Copies
from .disk import Disk
from .fetcher import FetchDeps, Fetcher
from .keeper import Keeper
from .peer import PeerClient
from .ratelimit import TokenBucket
from .reads import Lease, Opened, PeerFile, Reads
from .rollout import Rollout
from .sources import SourcePolicy
from .store import LocalStore
from .writes import Readable, Writes

log = logging.getLogger(__name__)

__all__ = ["Node", "Opened", "Readable"]


def _wait_for_consul(service: HolderService, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    delay = 0.2
    while True:
        try:
            return service.node_name()
        except ConsulUnavailable as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("%s Retrying in %.1fs.", exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


class Node:
    def __init__(
        self,
        cfg: Config,
        name: str,
        service: HolderService,
        client,
        store: LocalStore,
        address: str,
        watch_client=None,
    ):
        """Use Node.start(cfg): it finds our name and address in Consul first, so every
        part is complete."""
        self.cfg = cfg
        self.name = name
        self.service = service
        self.store = store
        keys = Keys(cfg.namespace)
        kv = ObjectsKV(client, cfg.namespace)
        self.holders = HolderIndex(
            client, keys, service, name, address, cfg.port, tags=cfg.holder_tags, watch_client=watch_client
        )
        self.copies = Copies(cfg, store, self.holders, name)
        self.keeper = Keeper(cfg, name, kv, store, self.copies, service)
        # Our sessions die with our HTTP check as well as with the node (see session.py).
        checks = ["serfHealth", f"service:{cfg.namespace}"]
        self.disk = Disk(cfg, name, store, self.copies, kv, self.holders, self.keeper.sync_applies)
        self.fetcher = Fetcher(
            FetchDeps(
                cfg=cfg,
                node=name,
                store=store,
                copies=self.copies,
                kv=kv,
                finder=self.holders,
                relay=RelayRegistry(client, keys, address, cfg.port),
                peer=PeerClient(name, cfg.stall_timeout, cfg.min_source_rate),
                policy=SourcePolicy(cfg.nearest),
                bucket=TokenBucket(cfg.fetch_rate),
                new_session=lambda: RenewedSession(client, "tuggle-agent fetch", 15.0, "delete", checks),
                semaphore=lambda source, session: Semaphore(client, keys.lock(source), cfg.source_limit, session),
                admit=self.disk.admit,
                ended=self.disk.fetch_ended,
            ),
            on_failed=self.keeper.fetch_failed,
        )
        self.keeper.attach(self.fetcher)
        self.disk.attach(self.fetcher.snapshot)
        self.reads = Reads(cfg, name, kv, self.copies, self.fetcher, self.disk)
        self.writes = Writes(cfg, name, client, kv, store, self.copies, self.keeper)
        self.rollout = Rollout(cfg, name, client, kv, self.holders, self.status)
        self.console = Console(client, cfg.namespace, kv, self.holders)  # the web console's data (front/ui.py)

    @classmethod
    def start(cls, cfg: Config, store: LocalStore | None = None) -> Node:
        client = make_client_from(cfg)
        service = HolderService(
            client, cfg.namespace, cfg.port, cfg.advertise_address, cfg.check_interval, cfg.check_timeout
        )
        name = _wait_for_consul(service, cfg.consul_start_timeout)
        address = service.reachable_address()
        store = store or LocalStore(cfg.data_dir)
        removed = store.clean_temp()
        if removed:
            log.info("removed %d leftover temp files of an earlier run", removed)
        # The holder session's watch blocks up to a minute (+ Consul's jitter).
        node = cls(cfg, name, service, client, store, address, make_client_from(cfg, timeout=90.0))
        node.keeper.reconcile(register=True)
        if not cfg.fetch_only:
            node.holders.start()
        try:
            node.rollout.announce()
        except ConsulUnavailable as exc:  # only ?status's "down" for this node depends on it
            log.warning("%s", exc)
        if cfg.scrub_interval:
            threading.Thread(target=node.keeper.scrub_loop, name="scrub", daemon=True).start()
        if cfg.full_reconcile_interval:
            threading.Thread(target=node.keeper.full_reconcile_loop, name="full-reconcile", daemon=True).start()
        threading.Thread(target=node.disk.loop, args=(node.keeper.stop,), name="evict", daemon=True).start()
        return node

    # -- the facade -------------------------------------------------------
    def check_upload(self, name: str, length: int | None) -> None:
        self.writes.check_upload(name, length)

    def upload(
        self, name: str, body: Readable, length: int | None, content_type: str, sync: SyncSpec | None = None
    ) -> ObjectMeta:
        return self.writes.upload(name, body, length, content_type, sync)

    def delete(self, name: str) -> str:
        return self.writes.delete(name)

    def sync(self, name: str, spec: SyncSpec) -> ObjectMeta:
        return self.writes.sync(name, spec)

    def adopt(self, names: list[str]) -> dict[str, str]:
        return self.writes.adopt(names)

    def meta(self, name: str) -> ObjectMeta:
        return self.reads.meta(name)

    def open(self, name: str, head: bool = False) -> Opened:
        return self.reads.open(name, head)

    def open_for_peer(
        self, name: str, bounds: Callable[[int], tuple[int, int]]
    ) -> tuple[ObjectMeta, tuple[int, int], Lease | PeerFile]:
        return self.reads.open_for_peer(name, bounds)

    def listing(self) -> list[ObjectMeta]:
        return self.reads.listing()

    def listing_with_holders(self) -> list[dict]:
        return self.rollout.listing(self.reads.listing())

    def rollout_status(self, name: str) -> dict:
        return self.rollout.status(name)

    def edges(self, name: str) -> list[Edge]:
        return self.reads.edges(name)

    def verify_later(self, name: str) -> bool:
        return self.copies.verify_later(self.reads.meta(name).name)

    def reconcile(self) -> dict:
        return self.keeper.reconcile()

    def apply_changes(self, raw: bytes | None, created: int) -> dict:
        return self.keeper.apply_changes(raw, created)

    def on_event(self, verb: str, object_id: str, version: str) -> str:
        return self.keeper.on_event(verb, object_id, version)

    # -- health and status ------------------------------------------------
    def ready(self) -> dict[str, str]:
        """Readiness (beside liveness /?ping): what is wrong, by part; empty when ready."""
        problems = {}
        try:
            self.service.node_name()
        except ConsulUnavailable as exc:
            problems["consul"] = str(exc)
        try:
            probe, f = self.store.temp_file("ready-probe", "ready")
            with f:
                f.write(b"ok")
            probe.unlink()
        except OSError as exc:
            problems["data_dir"] = f"{self.store.root} is not writable: {exc.strerror}"
        return problems

    def status(self) -> dict:
        local = []
        for name in self.store.names():
            obj = self.store.get(name)
            if obj is not None:
                local.append(
                    {
                        "name": name,
                        "version": obj.meta.version,
                        "size": obj.meta.size,
                        "sha256": obj.meta.sha256,
                        "source": obj.source,
                        "status": obj.status,
                        "orphan": name in self.copies.orphans,
                    }
                )
        fetching = [
            {
                "name": d.meta.name,
                "version": d.meta.version,
                "size": d.meta.size,
                "verified": d.verified,
                "source": d.source,
                "started_at": d.started_at,
                "rate": round(d.rate(), 1),
            }
            for d in self.fetcher.snapshot()
        ]
        return {
            "node": self.name,
            "fetch_only": self.cfg.fetch_only,
            "advertising": self.holders.advertising(),
            "relay": self.cfg.relay,
            "served_to_peers": int(metrics.REGISTRY.get_sample_value("tuggle_served_to_peers_bytes_total") or 0),
            "objects": local,
            "fetching": fetching,
            "orphans": [{"name": n, "why": why} for n, why in sorted(self.copies.orphans.items())],
            "bad_entries": [{"key": k, "why": why} for k, why in self.keeper.bad_entries],
            "disk": self.disk.status(),
            "checked_at": now_rfc3339(),
        }

    def close(self) -> None:
        """Leave the cluster cleanly: stop fetches, then deregister (no critical leftover)."""
        self.keeper.stop.set()
        self.fetcher.cancel_all()
        self.disk.reads.save()
        self.holders.close()  # our holder keys go at once, before the service's check does
        try:
            self.service.deregister()
        except ConsulUnavailable as exc:
            log.warning("%s", exc)
