"""The catalog tables: nodes, service instances and health checks.

Agents push their local services and checks here synchronously (Consul's
anti-entropy pushes registrations and status changes at once). A check going
critical or disappearing invalidates the sessions bound to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..codec import Fields, go_map
from ..version import DATACENTER
from .store import Interest

if TYPE_CHECKING:
    from .sessions import Sessions
    from .store import Store, Txn

TOPIC = "catalog"
INTEREST = Interest.of(TOPIC)


def node_record(name: str, node_id: str, address: str, meta: dict | None = None) -> dict:
    tagged = {"lan": address, "lan_ipv4": address, "wan": address, "wan_ipv4": address} if node_id else {}
    return {
        "ID": node_id,
        "Node": name,
        "Address": address,
        "Datacenter": DATACENTER,
        "TaggedAddresses": tagged,
        "Meta": go_map(meta),
        "CreateIndex": 0,
        "ModifyIndex": 0,
    }


def same_record(old: dict | None, new: dict) -> bool:
    """Equal but for the raft indexes (an unchanged write changes nothing)."""
    if old is None:
        return False
    strip = ("CreateIndex", "ModifyIndex")
    return {k: v for k, v in old.items() if k not in strip} == {k: v for k, v in new.items() if k not in strip}


class Catalog:
    def __init__(self, store: Store, sessions: Sessions):
        self.store = store
        self.sessions = sessions

    # -- writes (inside store.write()) --------------------------------------------
    def _stamp(self, txn: Txn, table: str, old: dict | None, new: dict) -> dict | None:
        """Give `new` its indexes unless it equals `old` (then: no write)."""
        if same_record(old, new):
            return None
        index = txn.touch(table, TOPIC)
        new["CreateIndex"] = old["CreateIndex"] if old else index
        new["ModifyIndex"] = index
        return new

    def _services_changed(self, txn: Txn, node: str, *names: str) -> None:
        """Per-service-name indexes drive health/catalog service queries; a
        node-level change (serfHealth) touches every service on that node."""
        if not names:
            names = tuple(s["Service"] for s in self.store.services.get(node, {}).values())
        for name in names:
            self.store.service_index[name] = txn.index

    def ensure_node(self, txn: Txn, record: dict) -> None:
        name = record["Node"]
        stamped = self._stamp(txn, "nodes", self.store.nodes.get(name), dict(record))
        if stamped:
            self.store.nodes[name] = stamped
            self.store.services.setdefault(name, {})
            self.store.checks.setdefault(name, {})
            self._services_changed(txn, name)

    def ensure_service(self, txn: Txn, node: str, service: dict) -> None:
        services = self.store.services[node]
        old = services.get(service["ID"])
        stamped = self._stamp(txn, "services", old, dict(service))
        if stamped:
            services[service["ID"]] = stamped
            self._services_changed(txn, node, service["Service"], *([old["Service"]] if old else []))

    def remove_service(self, txn: Txn, node: str, service_id: str) -> None:
        service = self.store.services.get(node, {}).pop(service_id, None)
        if service is None:
            return
        txn.touch("services", TOPIC)
        for check in list(self.store.checks[node].values()):
            if check["ServiceID"] == service_id:
                self.remove_check(txn, node, check["CheckID"])
        self._services_changed(txn, node, service["Service"])

    def ensure_check(self, txn: Txn, check: dict) -> None:
        node = check["Node"]
        checks = self.store.checks[node]
        stamped = self._stamp(txn, "checks", checks.get(check["CheckID"]), dict(check))
        if not stamped:
            return
        checks[check["CheckID"]] = stamped
        self._check_changed(txn, node, stamped)
        if stamped["Status"] == "critical":
            self.sessions.check_failed(txn, node, stamped["CheckID"])

    def set_check_status(self, txn: Txn, node: str, check_id: str, status: str, output: str) -> None:
        check = self.store.checks.get(node, {}).get(check_id)
        if check is not None:
            self.ensure_check(txn, {**check, "Status": status, "Output": output})

    def remove_check(self, txn: Txn, node: str, check_id: str) -> None:
        check = self.store.checks.get(node, {}).pop(check_id, None)
        if check is None:
            return
        txn.touch("checks", TOPIC)
        self._check_changed(txn, node, check)
        self.sessions.check_failed(txn, node, check_id)

    def _check_changed(self, txn: Txn, node: str, check: dict) -> None:
        if check["ServiceID"]:
            service = self.store.services[node].get(check["ServiceID"])
            self._services_changed(txn, node, *([service["Service"]] if service else []))
        else:
            self._services_changed(txn, node)

    def deregister_node(self, txn: Txn, node: str) -> None:
        if node not in self.store.nodes:
            return
        for service_id in list(self.store.services[node]):
            self.remove_service(txn, node, service_id)
        for check_id in list(self.store.checks[node]):
            self.remove_check(txn, node, check_id)
        del self.store.nodes[node], self.store.services[node], self.store.checks[node]
        txn.touch("nodes", TOPIC)
        if self.store.coordinates.pop(node, None) is not None:
            txn.touch("coordinates", "coordinates")
        self.sessions.node_removed(txn, node)

    # -- reads (caller holds store.lock) ---------------------------------------------
    def service_index(self, name: str) -> int:
        return self.store.service_index.get(name) or self.store.max_index("nodes", "services")

    def instances(self, name: str, tags: Sequence[str] = ()) -> list[tuple[dict, dict]]:
        """(node, service) pairs of a service, by node name then service ID;
        with tags, only instances carrying all of them."""
        out = []
        for node_name in sorted(self.store.services):
            for service_id in sorted(self.store.services[node_name]):
                service = self.store.services[node_name][service_id]
                if service["Service"] == name and all(t in service["Tags"] for t in tags):
                    out.append((self.store.nodes[node_name], service))
        return out

    def connect_instances(self, name: str) -> list[tuple[dict, dict]]:
        """Instances that accept mesh traffic for `name`: its sidecar proxies
        and connect-native instances."""
        out = []
        for node_name in sorted(self.store.services):
            for service_id in sorted(self.store.services[node_name]):
                service = self.store.services[node_name][service_id]
                proxy, connect = Fields(service["Proxy"]), Fields(service["Connect"])
                is_proxy = service["Kind"] == "connect-proxy" and proxy.get("DestinationServiceName") == name
                if is_proxy or (service["Service"] == name and connect.get("Native")):
                    out.append((self.store.nodes[node_name], service))
        return out

    def node_checks(self, node: str, service_id: str | None = None) -> list[dict]:
        checks = self.store.checks.get(node, {})
        return [checks[c] for c in sorted(checks) if service_id is None or checks[c]["ServiceID"] == service_id]

    def all_checks(self) -> list[dict]:
        return [check for node in sorted(self.store.checks) for check in self.node_checks(node)]
