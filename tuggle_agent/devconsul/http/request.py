"""Request/response objects and the conventions shared by every endpoint:
query flags, blocking parameters, `dc` checks, metadata headers, errors, and
the request's ACL token with what it may see."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from ..codec import Fields, go_json, parse_duration
from ..errors import StateError
from ..version import DATACENTER

if TYPE_CHECKING:
    from ..node.agent import Agent
    from ..state.authz import Authz

Row = TypeVar("Row")


class HTTPError(Exception):
    """An error with its own status code (Consul's HTTPError)."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}


def meta(index: int | None, leader: bool = True) -> dict[str, str]:
    """Query metadata headers; server-backed reads also claim a known leader."""
    headers = {}
    if index is not None:
        # Consul never hands out index 0: clients would spin on it.
        headers["X-Consul-Index"] = str(max(index, 1))
    if leader:
        headers.update(
            {"X-Consul-KnownLeader": "true", "X-Consul-LastContact": "0", "X-Consul-Query-Backend": "blocking-query"}
        )
    return headers


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, obj: Any, status: int = 200, index: int | None = None, leader: bool = False) -> Response:
        return cls(status, go_json(obj).encode(), {"Content-Type": "application/json", **meta(index, leader)})

    @classmethod
    def text(cls, status: int, text: str, headers: dict[str, str] | None = None) -> Response:
        return cls(status, text.encode(), {"Content-Type": "text/plain; charset=utf-8", **(headers or {})})


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Any
    body: bytes
    agent: Agent
    tail: str = ""  # the part of the path after the route's prefix
    # Rows were left out because the token may not read them: the answer
    # carries X-Consul-Results-Filtered-By-ACLs (see Router.dispatch).
    filtered: bool = False
    _authz: Authz | None = None

    def has(self, name: str) -> bool:
        return name in self.query

    def get(self, name: str, default: str = "") -> str:
        values = self.query.get(name)
        return values[0] if values else default

    def getall(self, name: str) -> list[str]:
        return self.query.get(name, [])

    @property
    def token(self) -> str:
        """The ACL token as Consul's parseToken finds it: ?token= first, then
        X-Consul-Token, then `Authorization: Bearer`; "" means anonymous."""
        if self.get("token"):
            return self.get("token")
        if self.headers.get("X-Consul-Token"):
            return self.headers["X-Consul-Token"].strip()
        scheme, _, value = self.headers.get("Authorization", "").partition(" ")
        return value.strip() if scheme.lower() == "bearer" else ""

    @property
    def authz(self) -> Authz:
        """What the token may do; PermissionDenied("ACL not found") for a
        token nobody holds. Resolved on first use, so endpoints without ACL
        checks (status, ui) answer whatever the token."""
        if self._authz is None:
            self._authz = self.agent.datacenter.acl.resolve(self.token)
        return self._authz

    def visible(self, rows: Iterable[Row], readable) -> list[Row]:
        """The rows `readable(row)` allows, noting whether any were dropped."""
        rows = list(rows)
        kept = [row for row in rows if readable(row)]
        self.filtered = self.filtered or len(kept) != len(rows)
        return kept

    def fields(self, aliases: dict[str, str] | None = None) -> Fields:
        """The JSON body as a case-insensitive object; 400 when it is not JSON."""
        if not self.body.strip():
            return Fields(None, aliases)
        try:
            raw = json.loads(self.body)
        except ValueError as err:
            raise HTTPError(400, f"Request decode failed: {err}") from err
        if not isinstance(raw, dict):
            raise HTTPError(400, "Request decode failed: json: cannot unmarshal into a JSON object")
        return Fields(raw, aliases)

    def check_dc(self, dc: str | None = None) -> None:
        """Only dc1 exists; Consul's RPC layer answers anything else with 500.
        `dc` defaults to the ?dc= parameter (bodies may carry their own)."""
        dc = self.get("dc") if dc is None else dc
        if dc and dc != DATACENTER:
            raise StateError("No path to datacenter")

    def uint(self, name: str) -> int:
        """A uint64 query value; Go's strconv error becomes a 500 like in Consul."""
        text = self.get(name)
        if not text.isdigit() or int(text) >= 2**64:
            raise StateError(f'strconv.ParseUint: parsing "{text}": invalid syntax')
        return int(text)

    def blocking(self, default_wait: float | None = None, max_wait: float | None = None, jitter: bool | None = None):
        """(min_index, timeout) as Consul's parseWait + RPCQueryTimeout compute them."""
        timings = self.agent.timings
        wait = 0.0
        if self.get("wait"):
            try:
                wait = parse_duration(self.get("wait"))
            except ValueError as err:
                raise HTTPError(400, "Invalid wait time") from err
        min_index = 0
        text = self.get("index")
        if text:
            if not text.isdigit():
                raise HTTPError(400, "Invalid index")
            min_index = int(text)
        if self.has("stale") and self.has("consistent"):
            raise HTTPError(400, "Cannot specify ?stale with ?consistent, conflicting semantics.")
        max_wait = timings.max_query_time if max_wait is None else max_wait
        default_wait = timings.default_query_time if default_wait is None else default_wait
        if wait > max_wait:
            wait = max_wait
        elif wait <= 0:
            wait = default_wait
        if timings.query_jitter if jitter is None else jitter:
            wait += random.uniform(0, wait / 16)
        return min_index, wait

    def blocking_read(self, interest, run) -> tuple[int, Any]:
        """Run a server-backed read with Consul's blocking semantics."""
        self.check_dc()
        min_index, timeout = self.blocking()

        def fresh_run():
            self.filtered = False  # only the answer's own run counts
            return run()

        return self.agent.store.blocking_query(interest, fresh_run, min_index, timeout, self.agent.stopping)


Handler = Callable[[Request], Any]


@dataclass
class Route:
    path: str
    methods: tuple[str, ...]
    handler: Handler

    @property
    def is_prefix(self) -> bool:
        return self.path.endswith("/") and self.path != "/"


class Routes:
    """Endpoint table of one API area; paths ending in '/' (except '/'
    itself) are prefixes."""

    def __init__(self) -> None:
        self.table: list[Route] = []

    def add(self, path: str, *methods: str) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            self.table.append(Route(path, methods, fn))
            return fn

        return register
