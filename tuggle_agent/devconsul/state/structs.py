"""Service and check definitions: decoding request bodies, and the JSON
shapes the different endpoints render them in (Consul's `structs` package).

A service is stored once, as a canonical dict; agent, catalog and health
endpoints each render their own view of it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..codec import Fields, format_duration, go_map, parse_duration
from ..errors import InvalidRequest
from ..version import DATACENTER

# Consul's snake_case / legacy aliases that do not fold to the field name.
CHECK_ALIASES = {"scriptargs": "args"}
STATUSES = ("passing", "warning", "critical")


@dataclass
class CheckDef:
    check_id: str
    name: str
    kind: str  # "http", "tcp", "ttl", "script" or "" (status only)
    service_id: str = ""
    notes: str = ""
    status: str = ""  # initial status; "" means Consul's default, critical
    output: str = ""
    interval: float = 0.0
    timeout: float = 0.0
    ttl: float = 0.0
    http: str = ""
    method: str = ""
    header: dict[str, list[str]] = field(default_factory=dict)
    body: str = ""
    tls_skip_verify: bool = False
    tcp: str = ""
    args: list[str] = field(default_factory=list)
    deregister_after: float = 0.0
    disable_redirects: bool = False
    success_before_passing: int = 0
    failures_before_warning: int = 0
    failures_before_critical: int = 0

    def definition(self) -> dict:
        """The `Definition` object of a HealthCheck."""
        out: dict[str, Any] = {}
        if self.interval:
            out["Interval"] = format_duration(self.interval)
        if self.timeout:
            out["Timeout"] = format_duration(self.timeout)
        if self.deregister_after:
            out["DeregisterCriticalServiceAfter"] = format_duration(self.deregister_after)
        if self.http:
            out.update(HTTP=self.http, Header=go_map(self.header) or None, Method=self.method, Body=self.body)
            out["TLSSkipVerify"] = self.tls_skip_verify
        if self.tcp:
            out["TCP"] = self.tcp
        if self.args:
            out["ScriptArgs"] = list(self.args)
        return out


def _duration(fields: Fields, name: str) -> float:
    value = fields.get(name)
    if value in (None, ""):
        return 0.0
    if isinstance(value, (int, float)):
        return value / 1e9  # Go decodes JSON numbers into Duration as nanoseconds
    try:
        return parse_duration(value)
    except ValueError as err:
        raise InvalidRequest(f"Request decode failed: {name}: {err}") from err


def _header(fields: Fields) -> dict[str, list[str]]:
    raw = fields.get("Header") or {}
    if not isinstance(raw, dict):
        raise InvalidRequest("Request decode failed: Header must be a map of string lists")
    return {k: list(v) if isinstance(v, list) else [str(v)] for k, v in raw.items()}


def parse_check(fields: Fields, check_id: str = "", name: str = "", service_id: str = "") -> CheckDef:
    """A check definition as Consul's CheckType/CheckDefinition decode it."""
    args = fields.get("Args") or []
    if isinstance(args, str):
        args = [args]
    check = CheckDef(
        check_id=fields.get("CheckID") or fields.get("ID") or check_id or fields.get("Name", ""),
        name=fields.get("Name") or name,
        kind="",
        service_id=fields.get("ServiceID") or service_id,
        notes=fields.get("Notes", ""),
        status=fields.get("Status", ""),
        output=fields.get("Output", ""),
        interval=_duration(fields, "Interval"),
        timeout=_duration(fields, "Timeout"),
        ttl=_duration(fields, "TTL"),
        http=fields.get("HTTP", ""),
        method=fields.get("Method", ""),
        header=_header(fields),
        body=fields.get("Body", ""),
        tls_skip_verify=bool(fields.get("TLSSkipVerify", False)),
        tcp=fields.get("TCP", ""),
        args=[str(a) for a in args],
        deregister_after=_duration(fields, "DeregisterCriticalServiceAfter"),
        disable_redirects=bool(fields.get("DisableRedirects", False)),
        success_before_passing=int(fields.get("SuccessBeforePassing", 0)),
        failures_before_warning=int(fields.get("FailuresBeforeWarning", 0)),
        failures_before_critical=int(fields.get("FailuresBeforeCritical", 0)),
    )
    if check.status and check.status not in STATUSES:
        raise InvalidRequest(f"Invalid check status: {check.status!r}")
    if check.ttl:
        check.kind = "ttl"
    elif check.http or check.tcp or check.args:
        if check.interval <= 0:
            raise InvalidRequest("Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP or UDP checks")
        check.kind = "http" if check.http else "tcp" if check.tcp else "script"
    return check


_META_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _validate_meta(meta: Any) -> None:
    """Consul's service/node metadata rules (structs.ValidateMetadata)."""
    if not isinstance(meta, dict):
        raise InvalidRequest("Invalid Service Meta: Meta must be a map of strings")
    if len(meta) > 64:
        raise InvalidRequest("Invalid Service Meta: Node metadata cannot contain more than 64 key/value pairs")
    for key, value in meta.items():
        problem = (
            "Key cannot be blank" if not key
            else "Key is too long (limit: 128 characters)" if len(key) > 128
            else "Key contains invalid characters" if not _META_KEY.match(key)
            else "Key prefix 'consul-' is reserved for internal use" if key.startswith("consul-")
            else "Value is too long (limit: 512 characters)" if len(str(value)) > 512
            else ""
        )  # fmt: skip
        if problem:
            raise InvalidRequest(f"Invalid Service Meta: Couldn't load metadata pair ('{key}', '{value}'): {problem}")


def parse_service(body: Fields) -> tuple[dict, list[CheckDef]]:
    """(canonical service dict, its checks) from a service registration body."""
    name = body.get("Name", "")
    if not name:
        raise InvalidRequest("Missing service name")
    service_id = body.get("ID", "") or name
    meta = body.get("Meta") or {}
    _validate_meta(meta)
    tagged = {}
    for key, raw in (body.get("TaggedAddresses") or {}).items():
        addr = Fields(raw if isinstance(raw, dict) else {"Address": raw})
        tagged[key] = {"Address": addr.get("Address", ""), "Port": int(addr.get("Port", 0))}
    weights = body.sub("Weights")
    service = {
        "ID": service_id,
        "Service": name,
        "Tags": list(body.get("Tags") or []),
        "Meta": go_map({str(k): str(v) for k, v in meta.items()}),
        "Port": int(body.get("Port", 0)),
        "Address": body.get("Address", ""),
        "TaggedAddresses": go_map(tagged),
        "Weights": {"Passing": int(weights.get("Passing", 1)), "Warning": int(weights.get("Warning", 1))},
        "EnableTagOverride": bool(body.get("EnableTagOverride", False)),
        "Kind": body.get("Kind", ""),
        "Proxy": body.get("Proxy") or None,
        "Connect": body.get("Connect") or None,
    }
    raw_checks = body.items("Checks", CHECK_ALIASES)
    if body.get("Check"):
        raw_checks.insert(0, body.sub("Check", CHECK_ALIASES))
    checks = []
    for n, fields in enumerate(raw_checks, start=1):
        default_id = f"service:{service_id}" if len(raw_checks) == 1 else f"service:{service_id}:{n}"
        check = parse_check(fields, default_id, f"Service '{name}' check", service_id)
        check.service_id = service_id
        checks.append(check)
    return service, checks


# -- renderings ---------------------------------------------------------------------


def agent_service(service: dict) -> dict:
    """GET /v1/agent/services entry (api.AgentService)."""
    out = {"ID": service["ID"], "Service": service["Service"], "Tags": service["Tags"], "Meta": service["Meta"]}
    out.update(Port=service["Port"], Address=service["Address"])
    if service["TaggedAddresses"]:
        out["TaggedAddresses"] = service["TaggedAddresses"]
    out.update(Weights=service["Weights"], EnableTagOverride=service["EnableTagOverride"])
    _optional_mesh(out, service)
    out["Datacenter"] = DATACENTER
    return out


def node_service(service: dict) -> dict:
    """A catalog service instance as health/catalog-node endpoints show it."""
    out = {"ID": service["ID"], "Service": service["Service"], "Tags": service["Tags"], "Address": service["Address"]}
    if service["TaggedAddresses"]:
        out["TaggedAddresses"] = service["TaggedAddresses"]
    out.update(Meta=service["Meta"], Port=service["Port"], Weights=service["Weights"])
    out["EnableTagOverride"] = service["EnableTagOverride"]
    out.update(Proxy=service["Proxy"] or {"MeshGateway": {}, "Expose": {}}, Connect=service["Connect"] or {})
    if service["Kind"]:
        out = {"Kind": service["Kind"], **out}
    out.update(PeerName="", CreateIndex=service["CreateIndex"], ModifyIndex=service["ModifyIndex"])
    return out


def catalog_service(node: dict, service: dict) -> dict:
    """GET /v1/catalog/service/<name> entry: node and service fields flattened."""
    return {
        "ID": node["ID"],
        "Node": node["Node"],
        "Address": node["Address"],
        "Datacenter": node["Datacenter"],
        "TaggedAddresses": node["TaggedAddresses"],
        "NodeMeta": node["Meta"],
        "ServiceKind": service["Kind"],
        "ServiceID": service["ID"],
        "ServiceName": service["Service"],
        "ServiceTags": service["Tags"],
        "ServiceAddress": service["Address"],
        "ServiceTaggedAddresses": service["TaggedAddresses"] or None,
        "ServiceWeights": service["Weights"],
        "ServiceMeta": service["Meta"],
        "ServicePort": service["Port"],
        "ServiceSocketPath": "",
        "ServiceEnableTagOverride": service["EnableTagOverride"],
        "ServiceProxy": service["Proxy"] or {"MeshGateway": {}, "Expose": {}},
        "ServiceConnect": service["Connect"] or {},
        "CreateIndex": service["CreateIndex"],
        "ModifyIndex": service["ModifyIndex"],
    }


def _optional_mesh(out: dict, service: dict) -> None:
    if service["Kind"]:
        out["Kind"] = service["Kind"]
    if service["Proxy"]:
        out["Proxy"] = service["Proxy"]
    if service["Connect"]:
        out["Connect"] = service["Connect"]


def health_check(node: str, check: CheckDef, status: str, output: str, service: dict | None) -> dict:
    """A HealthCheck row (catalog and agent/checks share the shape)."""
    return {
        "Node": node,
        "CheckID": check.check_id,
        "Name": check.name,
        "Status": status,
        "Notes": check.notes,
        "Output": output,
        "ServiceID": check.service_id,
        "ServiceName": service["Service"] if service else "",
        "ServiceTags": list(service["Tags"]) if service else [],
        "Type": check.kind,
        "Interval": format_duration(check.interval) if check.interval else "",
        "Timeout": format_duration(check.timeout) if check.timeout else "",
        "ExposedPort": 0,
        "Definition": check.definition(),
        "CreateIndex": 0,
        "ModifyIndex": 0,
    }
