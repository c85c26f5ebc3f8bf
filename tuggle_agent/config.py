"""All of tuggle-agent's settings in one typed place: defaults, parsing, validation.

Like waitress's `adjustments`, each setting is declared once with its converter
and default; YAML, command-line flags and environment variables all pass through
the same converters, so a bad value is reported the same way wherever it came
from: naming the key and the expected form.  `config/tuggle.yaml` documents every
key; `tests/test_config.py` keeps the two in step.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import ipaddress
import os
from pathlib import Path
from typing import Any, Callable

import yaml

from .units import parse_duration, parse_rate, parse_size


class ConfigError(ValueError):
    """A setting is missing, unknown or malformed; the message names the key."""


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
        return v.lower() in ("true", "yes", "on", "1")
    raise ValueError(f"expected true or false, got {v!r}")


def _int_range(lo: int, hi: int) -> Callable[[Any], int]:
    def conv(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, (int, str)):
            raise ValueError(f"expected a whole number from {lo} to {hi}, got {v!r}")
        try:
            n = int(v)
        except ValueError:
            raise ValueError(f"expected a whole number from {lo} to {hi}, got {v!r}") from None
        if not lo <= n <= hi:
            raise ValueError(f"expected a whole number from {lo} to {hi}, got {n}")
        return n
    return conv


def _str(v: Any) -> str:
    if not isinstance(v, (str, int)) or isinstance(v, bool):
        raise ValueError(f"expected a string, got {v!r}")
    return str(v)


def _opt_str(v: Any) -> str | None:
    return None if v in (None, "") else _str(v)


def _choice(*choices: str) -> Callable[[Any], str]:
    def conv(v: Any) -> str:
        if v not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {v!r}")
        return v
    return conv


def _positive_duration(v: Any) -> float:
    d = parse_duration(v)
    if d <= 0:
        raise ValueError(f"expected a positive duration such as 30s or 10m, got {v!r}")
    return d


def _networks(v: Any) -> tuple:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, (list, tuple)):
        raise ValueError(f"expected a list of addresses or CIDR networks such as [127.0.0.1/8, ::1], got {v!r}")
    nets = []
    for item in v:
        try:
            nets.append(ipaddress.ip_network(str(item), strict=False))
        except ValueError:
            raise ValueError(f"expected an address or CIDR network such as 10.0.0.0/8, got {item!r}") from None
    return tuple(nets)


@dataclasses.dataclass(frozen=True)
class Hook:
    """One hook command: argv list, optional glob on the object name, timeout."""
    command: tuple[str, ...]
    timeout: float = 60.0
    match: str = "*"

    def applies_to(self, name: str) -> bool:
        return fnmatch.fnmatchcase(name, self.match)


_HOOK_KINDS = ("pre_download", "post_download", "post_delete")


def _hooks(v: Any) -> dict[str, tuple[Hook, ...]]:
    if v is None:
        v = {}
    if not isinstance(v, dict):
        raise ValueError("expected a mapping with keys " + ", ".join(_HOOK_KINDS))
    out: dict[str, tuple[Hook, ...]] = {k: () for k in _HOOK_KINDS}
    for kind, entries in v.items():
        if kind not in _HOOK_KINDS:
            raise ValueError(f"unknown hook kind {kind!r}; expected one of {', '.join(_HOOK_KINDS)}")
        if entries is None:
            continue
        if not isinstance(entries, list):
            raise ValueError(f"hooks.{kind}: expected a list of {{command: [...], timeout: 30s, match: '*'}}")
        hooks = []
        for i, e in enumerate(entries):
            where = f"hooks.{kind}[{i}]"
            if not isinstance(e, dict) or "command" not in e:
                raise ValueError(f"{where}: expected a mapping with a 'command' list")
            unknown = set(e) - {"command", "timeout", "match"}
            if unknown:
                raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; expected command, timeout, match")
            cmd = e["command"]
            if isinstance(cmd, str):
                cmd = [cmd]
            if not isinstance(cmd, list) or not cmd or not all(isinstance(c, (str, int, float)) for c in cmd):
                raise ValueError(f"{where}.command: expected a non-empty list of strings (argv; no shell)")
            try:
                timeout = _positive_duration(e.get("timeout", "60s"))
            except ValueError as exc:
                raise ValueError(f"{where}.timeout: {exc}") from None
            match = e.get("match", "*")
            if not isinstance(match, str):
                raise ValueError(f"{where}.match: expected a glob string such as '*.tar.gz'")
            hooks.append(Hook(tuple(str(c) for c in cmd), timeout, match))
        out[kind] = tuple(hooks)
    return out


@dataclasses.dataclass(frozen=True)
class Setting:
    key: str
    convert: Callable[[Any], Any]
    default: Any


# The order here is the order of config/tuggle.yaml.
SETTINGS: tuple[Setting, ...] = (
    Setting("data_dir", _str, "./data"),
    Setting("bind", _str, "0.0.0.0"),
    Setting("port", _int_range(1, 65535), 8900),
    Setting("namespace", _str, "tuggle"),
    Setting("advertise_address", _opt_str, None),
    Setting("consul.address", _opt_str, None),
    Setting("consul.token", _opt_str, None),
    Setting("consul.start_timeout", _positive_duration, 60.0),
    Setting("fetch_only", _bool, False),
    Setting("fetch_rate", parse_rate, None),
    Setting("serve_rate", parse_rate, None),
    Setting("fetch_timeout", _positive_duration, 600.0),
    Setting("stall_timeout", _positive_duration, 30.0),
    Setting("holder_wait", _positive_duration, 30.0),
    Setting("min_source_rate", parse_size, 4096),
    Setting("nearest", _int_range(1, 1000), 3),
    Setting("max_fetch_per_source", _int_range(1, 1000), 3),
    Setting("relay", _choice("pipelined", "store-and-forward"), "pipelined"),
    Setting("relay_fanout", _int_range(1, 1000), 1),
    Setting("verify_on_serve", _bool, True),
    Setting("scrub_interval", parse_duration, 86400.0),
    Setting("tombstone_ttl", _positive_duration, 30 * 86400.0),
    Setting("max_upload_size", parse_size, 64 * 2**40),
    Setting("write_allow", _networks, _networks(["127.0.0.0/8", "::1"])),
    Setting("threads", _int_range(4, 1024), 64),
    Setting("check_interval", _positive_duration, 10.0),
    Setting("check_timeout", _positive_duration, 5.0),
    Setting("progress_interval", _positive_duration, 5.0),
    Setting("post_download_failure", _choice("keep", "discard"), "keep"),
    Setting("hooks", _hooks, _hooks({})),
    Setting("log_level", _choice("debug", "info", "warning", "error"), "info"),
)
_BY_KEY = {s.key: s for s in SETTINGS}


@dataclasses.dataclass(frozen=True)
class Config:
    data_dir: Path
    bind: str
    port: int
    namespace: str
    advertise_address: str | None
    consul_address: str | None
    consul_token: str | None
    consul_start_timeout: float
    fetch_only: bool
    fetch_rate: int | None
    serve_rate: int | None
    fetch_timeout: float
    stall_timeout: float
    holder_wait: float
    min_source_rate: int
    nearest: int
    max_fetch_per_source: int
    relay: str
    relay_fanout: int
    verify_on_serve: bool
    scrub_interval: float
    tombstone_ttl: float
    max_upload_size: int
    write_allow: tuple
    threads: int
    check_interval: float
    check_timeout: float
    progress_interval: float
    post_download_failure: str
    hooks: dict
    log_level: str
    source: str | None = None  # the YAML file it came from, for handlers that re-read it

    @property
    def local_host(self) -> str:
        """Where processes on this host reach our HTTP API (a wildcard bind means loopback)."""
        return "127.0.0.1" if self.bind in ("0.0.0.0", "::", "") else self.bind

    @property
    def pipelined(self) -> bool:
        return self.relay == "pipelined"

    @property
    def source_limit(self) -> int:
        """Slots of each source's semaphore.  With pipelined relay a source feeding k
        peers splits its upload k ways and so does everything downstream of it, so
        relay_fanout (default 1: a chain) caps it below max_fetch_per_source."""
        if self.pipelined:
            return min(self.max_fetch_per_source, self.relay_fanout)
        return self.max_fetch_per_source

    def allows_write_from(self, address: str) -> bool:
        ip = _client_ip(address)
        return ip is not None and any(ip in net for net in self.write_allow)

    def is_this_host(self, address: str) -> bool:
        """Loopback, or our own bind address (Consul's http watch handler posts from it)."""
        ip = _client_ip(address)
        return ip is not None and (ip.is_loopback or str(ip) == self.bind)


def _client_ip(address: str):
    """The client's IP (IPv4-mapped IPv6 unwrapped), or None if it is not an address."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    return getattr(ip, "ipv4_mapped", None) or ip


def _flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and key == "consul":
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def load_config(path: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None,
                env: dict[str, str] | None = None) -> Config:
    """Build a Config: defaults < YAML file < environment < explicit overrides (flags)."""
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            text = p.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read config file {p}: {exc.strerror}") from None
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: expected a mapping of settings at the top level")
        raw.update(_flatten(data))
    # Consul's own conventions, so one environment serves `consul` and us alike.
    if env.get("CONSUL_HTTP_ADDR"):
        raw["consul.address"] = env["CONSUL_HTTP_ADDR"]
    if env.get("CONSUL_HTTP_TOKEN"):
        raw["consul.token"] = env["CONSUL_HTTP_TOKEN"]
    for k, v in (overrides or {}).items():
        if v is not None:
            raw[k] = v
    values: dict[str, Any] = {}
    for key, value in raw.items():
        setting = _BY_KEY.get(key)
        if setting is None:
            where = f" in {path}" if path else ""
            raise ConfigError(f"unknown setting {key!r}{where}; known settings: {', '.join(_BY_KEY)}")
        try:
            values[key] = setting.convert(value)
        except ValueError as exc:
            raise ConfigError(f"setting {key!r}: {exc}") from None
    for s in SETTINGS:
        values.setdefault(s.key, s.default)
    if not values["namespace"] or "/" in values["namespace"]:
        raise ConfigError(f"setting 'namespace': expected a non-empty name without '/', got {values['namespace']!r}")
    kwargs = {k.replace(".", "_"): v for k, v in values.items()}
    kwargs["data_dir"] = Path(kwargs["data_dir"]).absolute()
    return Config(**kwargs, source=str(Path(path).absolute()) if path else None)
