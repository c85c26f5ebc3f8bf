"""Agent configuration files: reading config dirs and validating `watches`.

Files are `*.json` and `*.hcl` read in name order like Consul; the `watches`
lists of all files are appended. Validation follows Consul's
`reloadWatches` + `watch.ParseExempt` + the per-type factories, with their
error texts, so a config the dev agent accepts is one Consul accepts.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl

from .codec import parse_duration

log = logging.getLogger(__name__)


class ConfigError(Exception):
    """Invalid agent configuration: the agent refuses to start or reload."""


# Top-level keys of a Consul agent config file. The dev agent only acts on
# `watches`; the others are accepted and ignored, anything else is an error
# as in Consul ("invalid config key").
KNOWN_KEYS = frozenset(
    """
    acl acl_agent_master_token acl_agent_token acl_datacenter acl_default_policy acl_down_policy
    acl_enable_key_list_policy acl_master_token acl_replication_token acl_token acl_ttl addresses
    advertise_addr advertise_addr_ipv4 advertise_addr_ipv6 advertise_addr_wan advertise_addr_wan_ipv4
    advertise_addr_wan_ipv6 advertise_reconnect_timeout alt_domain audit auto_config auto_encrypt
    auto_reload_config autopilot bind_addr bootstrap bootstrap_expect ca_file ca_path cache cert_file
    check checks check_output_max_size check_update_interval client_addr cloud config_entries connect
    data_dir datacenter default_query_time disable_anonymous_signature disable_coordinates
    disable_host_node_id disable_http_unprintable_char_filter disable_keyring_file disable_remote_exec
    disable_update_check discard_check_output discovery_max_stale dns_config domain
    enable_acl_replication enable_agent_tls_for_checks enable_central_service_config enable_debug
    enable_local_script_checks enable_script_checks enable_syslog encrypt encrypt_verify_incoming
    encrypt_verify_outgoing experiments gossip_lan gossip_wan http_config key_file kv_max_value_size
    leave_on_terminate license_path limits locality log_file log_json log_level log_rotate_bytes
    log_rotate_duration log_rotate_max_files max_query_time node_id node_meta node_name peering
    performance pid_file ports primary_datacenter primary_gateways primary_gateways_interval protocol
    raft_boltdb raft_logstore raft_protocol raft_snapshot_interval raft_snapshot_threshold
    raft_trailing_logs read_replica reconnect_timeout reconnect_timeout_wan recursors rejoin_after_leave
    reporting retry_interval retry_interval_wan retry_join retry_join_wan retry_max retry_max_wan rpc
    segment segments serf_lan serf_lan_allowed_cidrs serf_wan serf_wan_allowed_cidrs server
    server_name server_rejoin_age_max service services session_ttl_min skip_leave_on_interrupt
    snapshot_agent start_join start_join_wan syslog_facility telemetry tls tls_cipher_suites
    tls_min_version tls_prefer_server_cipher_suites translate_wan_addrs ui ui_config ui_content_path
    ui_dir unix_sockets verify_incoming verify_incoming_https verify_incoming_rpc verify_outgoing
    verify_server_hostname watches xds
    """.split()
)

# Parameters each watch type consumes (beyond the generic ones).
TYPE_PARAMS = {
    "key": ("stale", "key"),
    "keyprefix": ("stale", "prefix"),
    "services": ("stale",),
    "nodes": ("stale",),
    "service": ("stale", "service", "tag", "passingonly"),
    "checks": ("stale", "service", "state", "tag"),
    "event": ("name",),
}
CONSUL_ONLY_TYPES = ("agent_service",)  # valid in Consul, not implemented here


@dataclass
class HTTPHandlerConfig:
    path: str
    method: str = "POST"
    header: dict[str, list[str]] = field(default_factory=dict)
    timeout: float = 10.0
    tls_skip_verify: bool = False


@dataclass
class WatchSpec:
    """One validated watch; `query` holds the type-specific parameters."""

    source: str
    type: str
    query: dict[str, Any]
    datacenter: str = ""
    token: str = ""
    handler_type: str = "script"
    args: list[str] | None = None
    shell: str | None = None
    http: HTTPHandlerConfig | None = None

    def describe(self) -> str:
        detail = self.query.get("prefix") or self.query.get("key") or self.query.get("name") or ""
        return f"{self.type}:{detail}" if detail else self.type


def _string(params: dict, key: str) -> str:
    value = params.pop(key, "")
    if not isinstance(value, str):
        raise ConfigError(f"Expecting {key} to be a string")
    return value


def _bool(params: dict, key: str) -> bool:
    value = params.pop(key, False)
    if not isinstance(value, bool):
        raise ConfigError(f"Expecting {key} to be a boolean")
    return value


def _string_list(params: dict, key: str) -> list[str]:
    value = params.pop(key, [])
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"Expecting {key} to be a []string")
    return value


def _http_config(raw: Any, default_timeout: float) -> HTTPHandlerConfig:
    # Consul decodes with mapstructure, which ignores keys it does not know.
    if not isinstance(raw, dict):
        raise ConfigError("Failed to parse 'http_handler_config': expected a map")
    if not raw.get("path"):
        raise ConfigError("Failed to parse 'http_handler_config': Requires 'path' to be set")
    header = {k: [v] if isinstance(v, str) else list(v) for k, v in (raw.get("header") or {}).items()}
    timeout = default_timeout
    if raw.get("timeout"):
        try:
            timeout = parse_duration(raw["timeout"])
        except ValueError as err:
            raise ConfigError(f"Failed to parse 'http_handler_config': Failed to parse timeout: {err}") from err
    return HTTPHandlerConfig(
        path=raw["path"],
        method=raw.get("method") or "POST",
        header=header,
        timeout=timeout,
        tls_skip_verify=bool(raw.get("tls_skip_verify", False)),
    )


def _type_query(kind: str, params: dict) -> dict[str, Any]:
    """The per-type watch factories of Consul's api/watch/funcs.go."""
    query: dict[str, Any] = {}
    if "stale" in TYPE_PARAMS[kind]:
        query["stale"] = _bool(params, "stale")
    if kind == "key":
        query["key"] = _string(params, "key")
        if not query["key"]:
            raise ConfigError("Must specify a single key to watch")
    elif kind == "keyprefix":
        query["prefix"] = _string(params, "prefix")
        if not query["prefix"]:
            raise ConfigError("Must specify a single prefix to watch")
    elif kind == "service":
        query["service"] = _string(params, "service")
        if not query["service"]:
            raise ConfigError("Must specify a single service to watch")
        query["tag"] = _string_list(params, "tag")
        query["passingonly"] = _bool(params, "passingonly")
    elif kind == "checks":
        query["service"] = _string(params, "service")
        query["state"] = _string(params, "state")
        if query["service"] and query["state"]:
            raise ConfigError("Cannot specify service and state")
        if not query["service"] and not query["state"]:
            query["state"] = "any"
        query["tag"] = _string_list(params, "tag")
    elif kind == "event":
        query["name"] = _string(params, "name")
    return query


def parse_watch(raw: Any, source: str, default_http_timeout: float = 10.0) -> WatchSpec:
    if not isinstance(raw, dict):
        raise ConfigError("Watch definition must be an object")
    params = dict(raw)
    handler_type = params.get("handler_type", "script")
    if handler_type not in ("http", "script"):
        raise ConfigError(f"Handler type '{handler_type}' not recognized")
    kind = params.get("type")
    if isinstance(kind, str) and kind.startswith("connect_"):
        raise ConfigError(f"Watch type {kind} is not allowed in agent config")
    datacenter = _string(params, "datacenter")
    token = _string(params, "token")
    kind = _string(params, "type")
    if not kind:
        raise ConfigError("Watch type must be specified")
    _string(params, "handler_type")
    http = None
    if handler_type == "http":
        if "http_handler_config" not in params:
            raise ConfigError("Handler type 'http' requires 'http_handler_config' to be set")
        http = _http_config(params.pop("http_handler_config"), default_http_timeout)
    if kind in CONSUL_ONLY_TYPES:
        raise ConfigError(f"Watch type {kind} is valid in Consul but not implemented by tuggle-agent devconsul")
    if kind not in TYPE_PARAMS:
        raise ConfigError(f"Unsupported watch type: {kind}")
    query = _type_query(kind, params)
    has_handler, has_args = "handler" in params, "args" in params
    shell, args = params.pop("handler", None), params.pop("args", None)
    if params:
        raise ConfigError(f"Invalid parameters: [{' '.join(sorted(params))}]")
    if has_handler:
        log.warning("%s: the 'handler' field in watches has been deprecated and replaced with the 'args' field", source)
        if not isinstance(shell, str):
            raise ConfigError("Watch handler must be a string")
    if has_args:
        if isinstance(args, str):
            args = [args]  # a lone string is one argv element, never shell-split
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise ConfigError("Watch args must be a list of strings")
    if (has_handler and has_args) or ((has_handler or has_args) and handler_type == "http"):
        raise ConfigError("Only one watch handler allowed")
    if not has_handler and not has_args and handler_type != "http":
        raise ConfigError("Must define a watch handler")
    return WatchSpec(source, kind, query, datacenter, token, handler_type, args, shell, http)


def _read_file(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"Error reading '{path}': {err}") from err
    if not text.strip():
        return {}
    try:
        data = json.loads(text) if path.suffix == ".json" else hcl.loads(text)
    except Exception as err:  # json/pyhcl raise assorted exception types
        kind = "JSON" if path.suffix == ".json" else "HCL"
        raise ConfigError(f"Error parsing {path}: invalid {kind}: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"Error parsing {path}: top level must be an object")
    return data


def config_files(path: Path) -> list[Path]:
    """A config path is either one file or a dir of *.json/*.hcl files."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        # Consul refuses to start here ("config: Open failed on <path>"); the
        # dev agent lets test harnesses create per-node dirs after start and
        # reload, so it only warns.
        log.warning("config: Open failed on %s: no such file or directory (Consul would not start)", path)
        return []
    files = []
    for child in sorted(path.iterdir(), key=lambda p: p.name):
        if child.is_file() and child.suffix in (".json", ".hcl"):
            files.append(child)
        elif child.is_file():
            log.debug("skipping file %s, extension must be .hcl or .json", child)
    return files


def load_watches(paths: list[Path], default_http_timeout: float = 10.0) -> list[WatchSpec]:
    """All watches of the given config dirs/files, validated, in file order."""
    specs = []
    for path in paths:
        for file in config_files(path):
            data = _read_file(file)
            for key in data:
                if key not in KNOWN_KEYS:
                    raise ConfigError(f"Error parsing {file}: invalid config key {key}")
                if key != "watches":
                    log.debug("%s: ignoring config key %r (not used by the dev agent)", file, key)
            watches = data.get("watches") or []
            if isinstance(watches, dict):
                watches = [watches]  # HCL block syntax: watches { ... }
            if not isinstance(watches, list):
                raise ConfigError(f"Error parsing {file}: watches must be a list of objects")
            for n, raw in enumerate(watches, start=1):
                try:
                    specs.append(parse_watch(raw, str(file), default_http_timeout))
                except ConfigError as err:
                    raise ConfigError(f"{file}: Failed to parse watch #{n}: {err}") from err
    return specs
