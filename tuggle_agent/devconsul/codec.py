"""Consul's wire formats: Go JSON output, Go durations, Go-style body decoding.

Consul is written in Go, so clients (and watch handlers) see `encoding/json`
output and send bodies that Go decodes case-insensitively. Everything that
must look like Go on the wire goes through this module.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

# encoding/json escapes these even in compact mode (HTML safety), and
# Python's encoder does not; handlers that compare bytes must see Go's form.
_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_GO_ESCAPE_RE = re.compile("[<>&\u2028\u2029]")


def go_json(obj: Any, indent: int | None = None) -> str:
    """Encode like Go's json.Marshal (or MarshalIndent with `indent`): UTF-8,
    HTML characters escaped.

    Callers build dicts in Go struct field order; Go sorts map keys, so
    map-typed values must be passed in already sorted (see `go_map`).
    """
    separators = (",", ": ") if indent else (",", ":")
    text = json.dumps(obj, ensure_ascii=False, indent=indent, separators=separators, allow_nan=False)
    # <, >, & and the two separators can only occur inside JSON strings, so a
    # plain substitution is exact.
    return _GO_ESCAPE_RE.sub(lambda m: _GO_ESCAPES[m.group()], text)


def go_map(mapping: dict | None) -> dict:
    """A Go map as encoding/json writes it: keys sorted."""
    return dict(sorted((mapping or {}).items()))


def b64(value: bytes | None) -> str | None:
    """Go encodes []byte as base64 and a nil/empty slice as null."""
    return base64.b64encode(value).decode("ascii") if value else None


_DURATION_RE = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Go's time.ParseDuration, in seconds. Raises ValueError like Go errors."""
    s = text.strip() if isinstance(text, str) else None
    if s is None:
        raise ValueError(f"time: invalid duration {text!r}")
    sign = -1.0 if s.startswith("-") else 1.0
    body = s.lstrip("+-")
    if body == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(body):
        m = _DURATION_RE.match(body, pos)
        if not m or m.group(1) in ("", "."):
            raise ValueError(f'time: invalid duration "{text}"')
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not body:
        raise ValueError(f'time: invalid duration "{text}"')
    return sign * total


def format_duration(seconds: float) -> str:
    """Go's time.Duration.String() for a value in seconds ("1m30s", "10s", "100ms")."""
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)
    if ns < 1_000:
        return f"{sign}{ns}ns"
    if ns < 1_000_000:
        return f"{sign}{_trim(ns / 1e3)}µs"
    if ns < 1_000_000_000:
        return f"{sign}{_trim(ns / 1e6)}ms"
    hours, rest = divmod(ns, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    out = sign
    if hours:
        out += f"{hours}h"
    if hours or minutes:
        out += f"{minutes}m"
    return out + f"{_trim(rest / 1e9)}s"


def _trim(value: float) -> str:
    return f"{value:.9f}".rstrip("0").rstrip(".")


def parse_bool(text: str) -> bool:
    """strconv.ParseBool; raises ValueError for anything else."""
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError(text)


def uuid_to_uint64(uuid: str) -> int:
    """The event-list pseudo index: XOR of the two 64-bit halves of the UUID."""
    low = int(uuid[0:8] + uuid[9:13] + uuid[14:18], 16)
    high = int(uuid[19:23] + uuid[24:36], 16)
    return low ^ high


def _fold(name: str) -> str:
    return name.replace("_", "").replace("-", "").lower()


class Fields:
    """A JSON object read the way Consul reads request bodies.

    Go's decoder matches struct fields case-insensitively and Consul's
    `lib.TranslateKeys` adds snake_case aliases; folding case and dropping
    underscores covers both (it also accepts a few spellings Consul would
    not, which no client relies on being rejected).
    """

    def __init__(self, raw: dict | None, aliases: dict[str, str] | None = None):
        self.raw = raw or {}
        self._folded: dict[str, Any] = {}
        for key, value in self.raw.items():
            folded = _fold(key)
            self._folded[(aliases or {}).get(folded, folded)] = value

    def has(self, name: str) -> bool:
        return _fold(name) in self._folded

    def get(self, name: str, default: Any = None) -> Any:
        value = self._folded.get(_fold(name))
        return default if value is None else value

    def sub(self, name: str, aliases: dict[str, str] | None = None) -> Fields:
        value = self.get(name)
        return Fields(value if isinstance(value, dict) else None, aliases)

    def items(self, name: str, aliases: dict[str, str] | None = None) -> list[Fields]:
        value = self.get(name) or []
        return [Fields(v, aliases) for v in value if isinstance(v, dict)]
