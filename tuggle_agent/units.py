"""Parsing and printing of the sizes, rates and durations operators write in config.

Sizes follow the usual convention: decimal SI suffixes (kB, MB, GB) are powers of
1000 and IEC suffixes (KiB, MiB, GiB) powers of 1024, so `50MB` and `1.5GiB` mean
what a reader of `df` or a cloud price sheet expects.  Durations use Go/Consul
syntax (`10m`, `1h30m`, `500ms`) because operators write the same strings in
Consul config next to ours.
"""

from __future__ import annotations

import re

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "ki": 2**10,
    "kib": 2**10,
    "mi": 2**20,
    "mib": 2**20,
    "gi": 2**30,
    "gib": 2**30,
    "ti": 2**40,
    "tib": 2**40,
}
_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*$")

_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)")


def _plain_number(value, expected: str) -> int | float | None:
    """A YAML number as is (None for text); booleans and negatives are refused."""
    if isinstance(value, bool):
        raise ValueError(f"expected {expected}, got {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"expected {expected}, not a negative number: {value!r}")
        return value
    return None


def parse_size(text: str | int | float) -> int:
    """`"50MB"` -> 50_000_000, `"1.5GiB"` -> 1610612736; bare numbers are bytes."""
    number = _plain_number(text, "a size such as 50MB or 1.5GiB")
    if number is not None:
        return int(number)
    m = _SIZE_RE.match(str(text))
    unit = m.group(2).lower() if m else None
    if not m or unit not in _SIZE_UNITS:
        raise ValueError(f"expected a size such as 50MB or 1.5GiB, got {text!r}")
    return int(float(m.group(1)) * _SIZE_UNITS[unit])


def parse_rate(text: str | int | float | None) -> int | None:
    """A bytes-per-second rate; `unlimited` (or 0/None) means no limit -> None."""
    if text is None:
        return None
    if isinstance(text, str):
        t = text.strip().lower()
        if t in ("unlimited", "none", "0", ""):
            return None
        for suffix in ("/s", "ps"):
            if t.endswith(suffix):
                text = text.strip()[: -len(suffix)]
                break
    value = parse_size(text)
    return value or None


def parse_duration(text: str | int | float) -> float:
    """Go-style duration to seconds: `"10m"` -> 600.0; bare numbers are seconds."""
    number = _plain_number(text, "a duration such as 30s or 10m")
    if number is not None:
        return float(number)
    s = str(text).strip()
    if re.fullmatch(r"[0-9]+(\.[0-9]+)?", s):
        return float(s)
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s) or not s:
        raise ValueError(f"expected a duration such as 30s, 10m or 1h30m, got {text!r}")
    return total


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def format_duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "?"
    seconds = max(0, round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")
