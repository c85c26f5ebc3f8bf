"""What the client commands (`put`, `get`, `ls`, `rm`, `status`, `wait`, `adopt`) share:
the --agent option, one HTTP client for the local agent with the exit codes, progress
output and plain-text tables.

They talk to the local tuggle-agent over HTTP only (never to Consul).  Exit codes:

    0  success / target reached
    1  the agent could not be reached, or refused the request (the message says why)
    2  usage error
    3  not found (the agent answered 404)
    4  timeout (wait: the missing and failing nodes are listed)
    5  checksum mismatch (get: the downloaded bytes do not hash to the object's SHA-256)
"""

from __future__ import annotations

import functools
import json
import shutil
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

import click
import requests

from ..units import format_bytes, format_duration

OK, AGENT_ERROR, USAGE, NOT_FOUND, TIMEOUT, CHECKSUM = 0, 1, 2, 3, 4, 5
DEFAULT_AGENT = "http://127.0.0.1:8900"
EXIT_CODES_HELP = (
    "\b\nExit codes: 0 success / target reached, 1 agent unreachable or request refused, "
    "2 usage, 3 not found, 4 timeout, 5 checksum mismatch."
)
PROGRESS_INTERVAL = 5.0  # seconds between plain progress lines when stderr is not a TTY


class ClientError(click.ClickException):
    """A failure with its exit code; `doc` goes into the --json error document."""

    def __init__(self, message: str, exit_code: int = AGENT_ERROR, doc: dict | None = None):
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click declares it a ClassVar; per instance here
        self.doc = doc or {}


def agent_option(f):
    return click.option(
        "--agent",
        envvar="TUGGLE_ADDR",
        default=DEFAULT_AGENT,
        show_default=True,
        help="The local tuggle-agent (env TUGGLE_ADDR).",
    )(f)


def json_option(f):
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout (no progress).")(f)


def client_command(f: Callable) -> Callable:
    """Add --agent and --json; turn ClientError into its exit code, and with --json
    into a JSON error document on stdout."""

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        try:
            return f(*args, **kwargs)
        except ClientError as exc:
            if kwargs.get("as_json"):
                emit_json({"error": exc.message, "exit_code": exc.exit_code, **exc.doc})
            raise

    return agent_option(json_option(wrapper))


def emit_json(doc: Any) -> None:
    click.echo(json.dumps(doc, indent=1, sort_keys=True))


class Agent:
    """The local agent's HTTP API; every failure becomes a ClientError with its exit code."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.session = requests.Session()

    def request(self, method: str, path: str, *, ok: Iterable[int] = (200,), timeout: float = 60, **kw):
        try:
            r = self.session.request(method, self.url + path, timeout=timeout, **kw)
        except requests.RequestException as exc:
            raise ClientError(
                f"could not reach the tuggle-agent at {self.url} ({exc.__class__.__name__}); "
                "is `tuggle-agent serve` running there? (--agent / TUGGLE_ADDR)"
            ) from None
        if r.status_code in ok:
            return r
        detail = (
            r.text.strip()[:500]
            if not kw.get("stream")
            else r.raw.read(500, decode_content=True).decode(errors="replace")
        )
        if r.status_code == 404:
            raise ClientError(f"{method} {path}: not found on {self.url}: {detail}", NOT_FOUND)
        retry = f" (Retry-After: {r.headers['Retry-After']}s)" if "Retry-After" in r.headers else ""
        raise ClientError(f"{self.url} refused {method} {path} ({r.status_code}): {detail}{retry}")

    def json(self, path: str, **kw) -> Any:
        r = self.request("GET", path, **kw)
        try:
            return r.json()
        except ValueError:
            raise ClientError(
                f"{self.url} answered GET {path} with {r.headers.get('Content-Type')}, not JSON: "
                "is it a tuggle-agent recent enough for this command?"
            ) from None


def etag_sha256(headers) -> str | None:
    """The object's SHA-256 from an ETag header (`"<hex>"`, possibly weak)."""
    etag = headers.get("ETag")
    if not etag:
        return None
    return etag.removeprefix("W/").strip('"').lower()


class Progress:
    """Bytes or nodes done of a total: a tqdm bar on a TTY, a plain line every
    PROGRESS_INTERVAL seconds (and at the end) otherwise, nothing with --json."""

    def __init__(self, label: str, total: int, *, unit: str = "B", quiet: bool = False, initial: int = 0):
        self.label, self.total, self.unit, self.done = label, total, unit, initial
        self.start = self.last = time.monotonic()
        self.initial = initial
        self.bar = None
        self.quiet = quiet
        if not quiet and sys.stderr.isatty():
            from tqdm import tqdm  # only on a TTY: keeps plain and --json runs from importing it

            scale = unit == "B"
            sized = shutil.get_terminal_size((0, 0)).columns > 0  # 0: a pty of unknown size (`script`, CI)
            self.bar = tqdm(
                total=total,
                initial=initial,
                desc=label,
                unit=unit,
                unit_scale=scale,
                unit_divisor=1024 if scale else 1000,
                file=sys.stderr,
                dynamic_ncols=sized,
                ncols=None if sized else 80,
                nrows=None if sized else 20,  # tqdm hides bars beyond 0 rows
            )

    def line(self, extra: str = "") -> str:
        elapsed = max(time.monotonic() - self.start, 1e-6)
        pct = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        if self.unit != "B":
            return f"{self.label}: {self.done}/{self.total} {self.unit}{pct}{extra}, {format_duration(elapsed)} elapsed"
        rate = (self.done - self.initial) / elapsed
        eta = format_duration((self.total - self.done) / rate) if rate > 0 else "?"
        return f"{self.label}: {format_bytes(self.done)} of {format_bytes(self.total)}{pct}, {format_bytes(rate)}/s, ETA {eta}{extra}"

    def update(self, n: int) -> None:
        self.set(self.done + n)

    def set(self, done: int, total: int | None = None, extra: str = "") -> None:
        if total is not None:
            self.total = total
        if self.bar is not None:
            if total is not None:
                self.bar.total = total
            if extra:
                self.bar.set_postfix_str(extra, refresh=False)
            self.bar.update(done - self.done)
        self.done = done
        now = time.monotonic()
        if self.bar is None and not self.quiet and now - self.last >= PROGRESS_INTERVAL:
            self.last = now
            click.echo(self.line(extra and f", {extra}"), err=True)

    def close(self, extra: str = "") -> None:
        if self.bar is not None:
            self.bar.close()
        elif not self.quiet:
            click.echo(self.line(extra and f", {extra}"), err=True)


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """Left-aligned columns, two spaces apart."""
    cells = [headers, *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells)
