"""All of tuggle-agent's settings in one typed place: defaults, parsing, validation.

Like waitress's `adjustments`, each setting is declared once with its converter
and default; YAML, command-line flags and environment variables all pass through
the same converters, so a bad value is reported the same way wherever it came
from: naming the key, where it came from and the expected form.  `config/tuggle.yaml`
documents every key; `tests/test_config.py` keeps the two in step.

Invariant: a Config that `load_config` returns is usable as is.  Everything that can
be checked without the network is checked at load (addresses, ports, finite
durations, a writable data_dir, readable token and TLS files) and refused with a
ConfigError naming the key, so no bad setting surfaces later as a traceback.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import ipaddress
import math
import os
import re
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from .objects.metadata import PIECE_ALGORITHMS
from .units import parse_duration, parse_rate, parse_size


class ConfigError(ValueError):
    """A setting is missing, unknown or malformed; the message names the key."""


_TRUE = ("true", "t", "yes", "on", "1")  # t/f: Go's strconv.ParseBool, which reads CONSUL_HTTP_SSL
_FALSE = ("false", "f", "no", "off", "0")


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in _TRUE + _FALSE:
        return v.lower() in _TRUE
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


def _finite(v: Any, expected: str) -> Any:
    """YAML's .nan and .inf are floats; no size or duration may be one."""
    if isinstance(v, float) and not math.isfinite(v):
        raise ValueError(f"expected {expected}, got {v!r}")
    return v


def _duration(v: Any, positive: bool = False) -> float:
    expected = f"a {'positive ' if positive else ''}duration such as 30s or 10m"
    d = parse_duration(_finite(v, expected))
    # Longer waits than threading.TIMEOUT_MAX (about 292 years, Go's longest
    # time.Duration too) make Event.wait raise OverflowError.
    if not (d > 0 if positive else d >= 0) or d > threading.TIMEOUT_MAX:
        raise ValueError(f"expected {expected}, got {v!r}")
    return d


def _positive_duration(v: Any) -> float:
    return _duration(v, positive=True)


# Object sizes travel as JSON numbers, exact up to 2**53 (objects/metadata.py MAX_SIZE).
_MAX_BYTES = 2**53


def _size(v: Any) -> int:
    n = parse_size(_finite(v, "a size such as 50MB or 1.5GiB"))
    if n > _MAX_BYTES:
        raise ValueError(f"expected a size of at most 8PiB (2**53 bytes), got {v!r}")
    return n


@dataclasses.dataclass(frozen=True)
class DiskLimit:
    """cache.max_disk: a size in bytes, or a share of the data filesystem (`fraction`)."""

    bytes: int | None = None
    fraction: float | None = None

    def resolve(self, fs_total: int, others: int = 0) -> int:
        """The bytes the agent may take.  A share keeps the filesystem at most that full,
        counting the `others` bytes stored there by everyone else."""
        if self.bytes is not None:
            return self.bytes
        return max(0, int(fs_total * (self.fraction or 0.0)) - max(0, others))

    def __str__(self) -> str:
        return f"{self.fraction * 100:g}%" if self.fraction is not None else f"{self.bytes} bytes"


def _percent(v: Any) -> float:
    """`"80%"` (or a bare 80) -> 0.8; from above 0 to 100%."""
    expected = "a percentage such as 80%"
    text = str(_finite(v, expected)).strip() if not isinstance(v, bool) else ""
    try:
        n = float(text[:-1] if text.endswith("%") else text)
    except ValueError:
        raise ValueError(f"expected {expected}, got {v!r}") from None
    if not 0 < n <= 100:
        raise ValueError(f"expected {expected} above 0 and at most 100%, got {v!r}")
    return n / 100


def _disk_limit(v: Any) -> DiskLimit:
    if isinstance(v, str) and v.strip().endswith("%"):
        return DiskLimit(fraction=_percent(v))
    try:
        n = _size(v)
    except ValueError:
        raise ValueError(
            f"expected a size such as 50GiB or a percentage of the data filesystem such as 90%, got {v!r}"
        ) from None
    if n <= 0:
        raise ValueError(f"expected a size above 0 or a percentage such as 90%, got {v!r}")
    return DiskLimit(bytes=n)


def _rate(v: Any) -> int | None:
    n = parse_rate(_finite(v, "a rate such as 50MB or unlimited"))
    if n is not None and n > _MAX_BYTES:
        raise ValueError(f"expected a rate of at most 8PiB (2**53 bytes) per second, got {v!r}")
    return n


_HOSTNAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)


def _is_host(text: str) -> bool:
    """An IP address or an RFC 1123 host name (dotted digits must be a real IPv4 address)."""
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        pass
    return bool(_HOSTNAME.fullmatch(text)) and not re.fullmatch(r"[0-9.]+", text)


def _host(v: Any) -> str:
    text = _str(v)
    if not _is_host(text):
        raise ValueError(f"expected an IP address or host name such as 0.0.0.0, ::1 or node1.example.com, got {v!r}")
    return text


def _opt_host(v: Any) -> str | None:
    return None if v in (None, "") else _host(v)


def parse_consul_address(text: str) -> tuple[str | None, str, int]:
    """`host:port` or `http(s)://host:port` (as CONSUL_HTTP_ADDR) -> (scheme or None, host, port).
    IPv6 hosts are written in brackets ([::1]:8500) and returned without them."""
    expected = (
        f"expected host:port or http(s)://host:port such as 127.0.0.1:8500 or https://consul.local:8501, got {text!r}"
    )
    scheme: str | None
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = None, text
    elif scheme == "unix":
        # Consul's Go client dials unix sockets; py-consul builds http://host:port URLs only.
        raise ValueError(
            f"unix sockets ({text!r}) are not supported by the Consul client we use "
            "(py-consul); point it at the agent's HTTP address, host:port"
        )
    elif scheme not in ("http", "https"):
        raise ValueError(f"unknown scheme {scheme!r}: {expected}")
    rest = rest[:-1] if rest.endswith("/") else rest
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:([0-9]{1,5})|([^:/\[\]]+):([0-9]{1,5})", rest)
    if not m:
        raise ValueError(expected)
    host, port = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    if m.group(1):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(expected) from None
    elif not _is_host(host):
        raise ValueError(expected)
    if not 1 <= int(port) <= 65535:
        raise ValueError(f"port {port} out of range 1-65535: {expected}")
    return scheme, host, int(port)


def _consul_address(v: Any) -> str | None:
    if v in (None, ""):
        return None
    parse_consul_address(_str(v))
    return _str(v)


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
                raise ValueError(
                    f"{where}: unknown key(s) {', '.join(sorted(unknown))}; expected command, timeout, match"
                )
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
    Setting("bind", _host, "0.0.0.0"),
    Setting("port", _int_range(1, 65535), 8900),
    Setting("namespace", _str, "tuggle"),
    Setting("advertise_address", _opt_host, None),
    Setting("consul.address", _consul_address, None),
    Setting("consul.token", _opt_str, None),
    Setting("consul.token_file", _opt_str, None),
    Setting("consul.ssl", _bool, False),
    Setting("consul.ssl_verify", _bool, True),
    Setting("consul.ca_file", _opt_str, None),
    Setting("consul.cert_file", _opt_str, None),
    Setting("consul.key_file", _opt_str, None),
    Setting("consul.start_timeout", _positive_duration, 60.0),
    Setting("fetch_only", _bool, False),
    Setting("holder_tags", _bool, False),
    Setting("fetch_rate", _rate, None),
    Setting("serve_rate", _rate, None),
    Setting("fetch_timeout", _positive_duration, 600.0),
    Setting("stall_timeout", _positive_duration, 30.0),
    Setting("holder_wait", _positive_duration, 30.0),
    Setting("min_source_rate", _size, 4096),
    Setting("nearest", _int_range(1, 1000), 3),
    Setting("max_fetch_per_source", _int_range(1, 1000), 3),
    Setting("relay", _choice("pipelined", "store-and-forward"), "pipelined"),
    Setting("relay_fanout", _int_range(1, 1000), 1),
    Setting("verify_on_serve", _bool, False),
    Setting("piece_digest", _choice(*PIECE_ALGORITHMS), "blake3"),
    Setting("scrub_interval", _duration, 86400.0),
    Setting("kv_watch", _choice("changes", "keyprefix"), "changes"),
    Setting("full_reconcile_interval", _duration, 3600.0),
    Setting("tombstone_ttl", _positive_duration, 30 * 86400.0),
    Setting("max_upload_size", _size, 64 * 2**40),
    Setting("cache.max_disk", _disk_limit, DiskLimit(fraction=0.9)),
    Setting("cache.high_watermark", _percent, 0.9),
    Setting("cache.low_watermark", _percent, 0.8),
    Setting("cache.max_age", _duration, 0.0),
    Setting("cache.min_copies", _int_range(1, 1000), 2),
    Setting("write_allow", _networks, _networks(["127.0.0.0/8", "::1"])),
    Setting("write_token", _opt_str, None),
    Setting("write_token_file", _opt_str, None),
    Setting("threads", _int_range(4, 1024), 64),
    Setting("connection_limit", _int_range(16, 100000), 1024),
    Setting("max_serving_peers", _int_range(1, 1000), 16),
    Setting("idle_timeout", _positive_duration, 75.0),
    Setting("check_interval", _positive_duration, 10.0),
    Setting("check_timeout", _positive_duration, 5.0),
    Setting("progress_interval", _positive_duration, 5.0),
    Setting("post_download_failure", _choice("keep", "discard"), "keep"),
    Setting("hooks", _hooks, _hooks({})),
    Setting("log_level", _choice("debug", "info", "warning", "error"), "info"),
    Setting("log_format", _choice("text", "json"), "text"),
)
_BY_KEY = {s.key: s for s in SETTINGS}

# Consul's own environment variables (api.DefaultConfig), so one environment serves
# `consul` and us alike.  They beat the YAML file; flags beat them.
CONSUL_ENV: tuple[tuple[str, str], ...] = (
    ("CONSUL_HTTP_ADDR", "consul.address"),
    ("CONSUL_HTTP_TOKEN", "consul.token"),
    ("CONSUL_HTTP_TOKEN_FILE", "consul.token_file"),
    ("CONSUL_HTTP_SSL", "consul.ssl"),
    ("CONSUL_HTTP_SSL_VERIFY", "consul.ssl_verify"),
    ("CONSUL_CACERT", "consul.ca_file"),
    ("CONSUL_CLIENT_CERT", "consul.cert_file"),
    ("CONSUL_CLIENT_KEY", "consul.key_file"),
)


@dataclasses.dataclass(frozen=True)
class ConsulSettings:
    """How to reach the Consul agent, resolved: what consul/client.py's
    `make_client_from` builds py-consul's client from."""

    host: str = "127.0.0.1"  # IPv6 without brackets
    port: int = 8500
    scheme: str = "http"
    token: str | None = dataclasses.field(default=None, repr=False)
    verify: bool | str = True  # as requests takes it: False, True (system CAs) or a CA bundle path
    cert: tuple[str, str] | None = None  # client certificate and key files

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @classmethod
    def from_address(
        cls, address: str | None, token: str | None = None, ssl: bool = False, **tls: Any
    ) -> ConsulSettings:
        """Consul's rule for the scheme: https if the address says so or `ssl` is set
        (an explicit http:// never turns TLS off).  Raises ValueError for a bad address."""
        scheme, host, port = parse_consul_address(address or "127.0.0.1:8500")
        return cls(host, port, "https" if ssl or scheme == "https" else "http", token, **tls)


@dataclasses.dataclass(frozen=True)
class Config:
    data_dir: Path
    bind: str
    port: int
    namespace: str
    advertise_address: str | None
    consul_address: str | None
    consul_token: str | None = dataclasses.field(repr=False)
    consul_token_file: str | None
    consul_ssl: bool
    consul_ssl_verify: bool
    consul_ca_file: str | None
    consul_cert_file: str | None
    consul_key_file: str | None
    consul_start_timeout: float
    fetch_only: bool
    holder_tags: bool
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
    piece_digest: str
    scrub_interval: float
    kv_watch: str
    full_reconcile_interval: float
    tombstone_ttl: float
    max_upload_size: int
    cache_max_disk: DiskLimit
    cache_high_watermark: float
    cache_low_watermark: float
    cache_max_age: float
    cache_min_copies: int
    write_allow: tuple
    write_token: str | None = dataclasses.field(repr=False)
    write_token_file: str | None
    threads: int
    connection_limit: int
    max_serving_peers: int
    idle_timeout: float
    check_interval: float
    check_timeout: float
    progress_interval: float
    post_download_failure: str
    hooks: dict
    log_level: str
    log_format: str
    source: str | None = None  # the YAML file it came from, for handlers that re-read it
    # The token files' contents, read once at load (a missing file is a ConfigError then).
    consul_token_from_file: str | None = dataclasses.field(default=None, repr=False)
    write_token_from_file: str | None = dataclasses.field(default=None, repr=False)

    @property
    def consul_token_value(self) -> str | None:
        """The ACL token sent to Consul.  Consul's api.NewClient rule: a token file with
        content wins over a token, wherever either was set."""
        return self.consul_token_from_file or self.consul_token

    @property
    def write_token_value(self) -> str | None:
        """The bearer token PUT/DELETE/POST must carry (on top of write_allow), or None."""
        return self.write_token or self.write_token_from_file

    @property
    def consul_settings(self) -> ConsulSettings:
        verify: bool | str = (self.consul_ca_file or True) if self.consul_ssl_verify else False
        cert = (self.consul_cert_file, self.consul_key_file) if self.consul_cert_file else None
        return ConsulSettings.from_address(
            self.consul_address, self.consul_token_value, self.consul_ssl, verify=verify, cert=cert
        )

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


_SECTIONS = ("consul", "cache")  # mappings in the YAML whose keys are settings <section>.<key>


def _flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and key in _SECTIONS:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def load_config(
    path: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None, env: Mapping[str, str] | None = None
) -> Config:
    """Build a Config: defaults < YAML file < environment < explicit overrides (flags).

    Environment variables are Consul's (CONSUL_ENV); an empty one counts as unset, as in
    Consul.  Token and TLS files are read or checked here, and data_dir must exist or be
    creatable, and be writable: every failure is a ConfigError naming the key."""
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    origin: dict[str, str] = {}  # where each raw value came from, for error messages
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
        origin.update(dict.fromkeys(raw, f"in {p}"))
    for var, key in CONSUL_ENV:
        if env.get(var):
            raw[key], origin[key] = env[var], f"from environment variable {var}"
    for k, v in (overrides or {}).items():
        if v is not None:
            raw[k], origin[k] = v, "from the command line"
    values: dict[str, Any] = {}
    for key, value in raw.items():
        setting = _BY_KEY.get(key)
        if setting is None:
            where = f" in {path}" if path else ""
            raise ConfigError(f"unknown setting {key!r}{where}; known settings: {', '.join(_BY_KEY)}")
        try:
            values[key] = setting.convert(value)
        except ValueError as exc:
            raise ConfigError(f"setting {key!r} ({origin[key]}): {exc}") from None
    for s in SETTINGS:
        values.setdefault(s.key, s.default)
    if not values["namespace"] or "/" in values["namespace"]:
        raise ConfigError(f"setting 'namespace': expected a non-empty name without '/', got {values['namespace']!r}")
    if values["cache.low_watermark"] > values["cache.high_watermark"]:
        raise ConfigError(
            "settings 'cache.low_watermark' and 'cache.high_watermark': the low watermark must not be above "
            f"the high one (got {values['cache.low_watermark']:.0%} and {values['cache.high_watermark']:.0%})"
        )
    kwargs = {k.replace(".", "_"): v for k, v in values.items()}
    kwargs["data_dir"] = Path(kwargs["data_dir"]).absolute()
    _check_data_dir(kwargs["data_dir"])
    _check_tls_files(values)
    for key in ("consul.token", "write_token"):
        if values[key] is not None:
            _check_token(key, values[key])
    if values["write_token"] and values["write_token_file"]:
        raise ConfigError("settings 'write_token' and 'write_token_file': set one of them, not both")
    consul_from_file = _read_token_file("consul.token_file", values["consul.token_file"], empty_ok=True)
    write_from_file = _read_token_file("write_token_file", values["write_token_file"], empty_ok=False)
    return Config(
        **kwargs,
        source=str(Path(path).absolute()) if path else None,
        consul_token_from_file=consul_from_file,
        write_token_from_file=write_from_file,
    )


def _check_data_dir(data_dir: Path) -> None:
    """data_dir exists and is a writable directory, or can be created (it is not created here)."""
    if data_dir.exists():
        if not data_dir.is_dir():
            raise ConfigError(f"setting 'data_dir': {data_dir} exists and is not a directory")
        try:  # a real write: os.access says yes to root on a read-only mount or behind an ACL
            with tempfile.TemporaryFile(dir=data_dir, prefix=".tuggle-write-check-"):
                pass
        except OSError as exc:
            raise ConfigError(f"setting 'data_dir': {data_dir} is not writable: {exc.strerror}") from None
        return
    parent = data_dir.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(
            f"setting 'data_dir': {data_dir} does not exist and cannot be created "
            f"({parent} is not a writable directory)"
        )


def _check_tls_files(values: dict[str, Any]) -> None:
    for key in ("consul.ca_file", "consul.cert_file", "consul.key_file"):
        if values[key] is not None and not os.access(values[key], os.R_OK):
            raise ConfigError(f"setting {key!r}: cannot read {values[key]}")
    if bool(values["consul.cert_file"]) != bool(values["consul.key_file"]):
        # Consul's own rule (api.SetupTLSConfig).
        raise ConfigError(
            "settings 'consul.cert_file' and 'consul.key_file': both client cert and client key must be provided"
        )


def _check_token(key: str, token: str) -> None:
    # Sent as an HTTP header value: no spaces or control characters (a stray newline
    # would make every request fail, or inject a header).
    if not re.fullmatch(r"[\x21-\x7e]+", token):
        raise ConfigError(f"setting {key!r}: a token must be printable ASCII without spaces")


def _read_token_file(key: str, path: str | None, empty_ok: bool) -> str | None:
    """The stripped content of a token file (None when no file is set or, with
    `empty_ok`, the file is empty)."""
    if path is None:
        return None
    try:
        token = Path(path).read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"setting {key!r}: cannot read token file {path}: {getattr(exc, 'strerror', None) or exc}"
        ) from None
    if not token:
        if empty_ok:
            return None
        raise ConfigError(f"setting {key!r}: token file {path} is empty")
    _check_token(key, token)
    return token
