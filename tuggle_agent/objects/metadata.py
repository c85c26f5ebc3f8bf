"""What the cluster knows about an object: its metadata and its piece digests.

The metadata keeps the Go tuggle's JSON fields (`id`, `name`, `content_type`,
`size`, `created_at`) so existing readers of `<ns>/<name>` still work, and adds
`sha256` (whole-object digest), `version` (a fresh id per PUT, so a DELETE then
PUT of the same name is a different object everywhere), `piece_size` and `sync`
(prefetch request with Consul-style node/service/tag filters).

Piece digests (checked by verify.py) let a fetcher check every piece as it arrives:
a corrupt or lying holder is caught on its first bad piece, and only verified bytes
are ever streamed on to a client or a peer.

Metadata read back (from Consul KV or a sidecar) is untrusted: anyone with write
access to the KV prefix can plant it.  Invariant: every ObjectMeta and PieceList
built by `from_dict`/`from_json`/`from_entry`/`parse_entries` has passed
`validate`, so the rest of the agent may use its fields without further checks
(sizes and piece sizes are sane ints, digests are hex, the name is a valid name equal
to its key, sync filters compile in RE2).  Anything else raises BadMetadata, whose
message names the key (when known) and the field.  Objects built directly with the
constructor (the agent's own uploads) are not checked; call `validate()` to check one.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from . import syncfilter
from .names import NAME_RULE, is_valid_name, object_id

DEFAULT_CONTENT_TYPE = "application/octet-stream"
# Small pieces keep relay hops short: a node forwards a piece only once it is verified,
# so each hop of a chain adds about one piece time (64 KiB at 8 MiB/s = 8 ms).
MIN_PIECE = 64 * 1024
# A piece is hashed and verified whole before anyone sees it; past 1 GiB that is too
# much to redo after one bad byte.  Objects above MAX_PIECE * MAX_PIECES (1 TiB) get
# more than MAX_PIECES pieces instead of larger ones.
MAX_PIECE = 1 << 30
MAX_PIECES = 1024
# Sizes travel as JSON numbers; readers in other languages (JavaScript, Go's
# float64 decoding) are exact only up to 2**53.
MAX_SIZE = 2**53
# Our metadata is a few hundred bytes; anything near this is planted.
MAX_META_BYTES = 64 * 1024
# Consul's default KV value limit (limits.kv_max_value_size): a larger piece list could
# never have been written through Consul, so it is not read either.
MAX_PIECES_BYTES = 512 * 1024
# Our JSON nests two levels (metadata -> sync); a little room for fields we ignore.
MAX_JSON_DEPTH = 8
# requested_at is informative only (we write %Y-%m-%dT%H:%M:%SZ); keep it short.
MAX_REQUESTED_AT = 64

_SHA256 = re.compile(r"[0-9a-f]{64}")
VERSION = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Sent back as a Content-Type header: printable ASCII only, so no CR/LF header
# injection and nothing the WSGI server cannot encode.
_CONTENT_TYPE = re.compile(r"[\x20-\x7e]{1,255}")
# RFC 3339 date-time (section 5.6); fromisoformat then checks the ranges.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})")
_SYNC_FIELDS = ("node", "service", "tag", "requested_at")


class BadMetadata(ValueError):
    """Metadata or a piece list that must not be used; the message names the key and field."""


def piece_size_for(size: int) -> int:
    """Smallest power of two >= MIN_PIECE giving at most MAX_PIECES pieces, capped at MAX_PIECE."""
    p = MIN_PIECE
    while p * MAX_PIECES < size and p < MAX_PIECE:
        p *= 2
    return p


def piece_count(size: int, piece_size: int) -> int:
    """Pieces of an object: an empty object still has one (empty) piece."""
    return max(1, -(-size // piece_size))


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_rfc3339(text: str) -> datetime:
    """An RFC 3339 timestamp (Go's time.RFC3339Nano included) as an aware datetime."""
    if not isinstance(text, str) or not _RFC3339.fullmatch(text):
        raise ValueError(f"not an RFC 3339 timestamp: {text!r:.80}")
    try:
        return datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError as exc:  # e.g. February 30th
        raise ValueError(f"not an RFC 3339 timestamp: {text!r} ({exc})") from None


def _where(key: str | None, what: str = "metadata") -> str:
    return f"{what} at {key}" if key else what


def _bad(where: str, name: str, problem: str) -> BadMetadata:
    return BadMetadata(f"{where}: field {name!r} {problem}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_piece_size(v: Any, where: str) -> None:
    if not _is_int(v) or not MIN_PIECE <= v <= MAX_PIECE or v & (v - 1):
        raise _bad(where, "piece_size", f"must be a power of two from {MIN_PIECE} to {MAX_PIECE}, got {v!r}")


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _load_json(raw: Any, limit: int, where: str) -> Any:
    """Parse a KV value, refusing what no writer of ours produces: non-JSON, more than
    `limit` bytes, NaN/Infinity, nesting deeper than MAX_JSON_DEPTH."""
    if raw is None:
        raise BadMetadata(f"{where}: no value")
    if not isinstance(raw, (bytes, bytearray, str)):
        raise BadMetadata(f"{where}: expected a JSON text, got {type(raw).__name__}")
    size = len(raw.encode() if isinstance(raw, str) else raw)
    if size > limit:
        raise BadMetadata(f"{where}: value of {size} bytes exceeds the {limit}-byte limit")
    try:
        data = json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:
        raise BadMetadata(f"{where}: JSON nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise BadMetadata(f"{where}: not valid JSON: {exc}") from None
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise BadMetadata(f"{where}: JSON nested deeper than {MAX_JSON_DEPTH} levels")
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        stack.extend((c, depth + 1) for c in children)
    if not isinstance(data, dict):
        raise BadMetadata(f"{where}: expected a JSON object, got {type(data).__name__}")
    return data


@dataclass
class SyncSpec:
    """A prefetch request; filters are Consul event filter regexes ('' = any)."""

    node: str = ""
    service: str = ""
    tag: str = ""
    requested_at: str = ""

    @classmethod
    def from_value(cls, value: Any, where: str) -> SyncSpec | None:
        """The `sync` field as stored: null, or an object of string fields."""
        if value is None:
            return None
        if not isinstance(value, dict):
            raise _bad(where, "sync", f"must be null or an object, got {type(value).__name__}")
        unknown = set(value) - set(_SYNC_FIELDS)
        if unknown:
            raise _bad(
                where,
                "sync",
                f"has unknown field(s) {', '.join(sorted(map(repr, unknown)))}; expected {', '.join(_SYNC_FIELDS)}",
            )
        return cls(**value)

    def validate(self, where: str) -> None:
        for name in _SYNC_FIELDS:
            if not isinstance(getattr(self, name), str):
                raise _bad(where, f"sync.{name}", f"must be a string, got {getattr(self, name)!r}")
        if len(self.requested_at) > MAX_REQUESTED_AT:
            raise _bad(where, "sync.requested_at", f"is longer than {MAX_REQUESTED_AT} characters")
        try:
            syncfilter.check(self.node, self.service, self.tag)
        except syncfilter.BadFilter as exc:  # its message names the field: "sync filter node=..."
            raise BadMetadata(f"{where}: {exc}") from None


@dataclass
class ObjectMeta:
    name: str
    size: int
    sha256: str
    content_type: str = DEFAULT_CONTENT_TYPE
    created_at: str = field(default_factory=now_rfc3339)
    version: str = field(default_factory=lambda: uuid.uuid4().hex)
    piece_size: int = MIN_PIECE
    sync: SyncSpec | None = None
    id: str = ""

    def __post_init__(self):
        self.id = object_id(self.name)

    @property
    def etag(self) -> str:
        return self.sha256

    @property
    def created(self) -> datetime:
        return parse_rfc3339(self.created_at)

    @property
    def last_modified(self) -> str:
        return format_datetime(self.created.astimezone(UTC), usegmt=True)

    @property
    def piece_count(self) -> int:
        return piece_count(self.size, self.piece_size)

    def to_dict(self) -> dict:
        d = asdict(self)
        order = ["id", "name", "content_type", "size", "created_at", "sha256", "version", "piece_size", "sync"]
        return {k: d[k] for k in order}

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()

    def validate(self, key: str | None = None) -> ObjectMeta:
        """Raise BadMetadata unless every field is sane (see the module docstring);
        with `key`, the name must also be the key's last path component."""
        where = _where(key)
        if not is_valid_name(self.name):
            raise _bad(where, "name", f"{self.name!r} is not a valid object name ({NAME_RULE})")
        if key is not None and key.rsplit("/", 1)[-1] != self.name:
            raise _bad(where, "name", f"{self.name!r} is not the key's last path component")
        if not _is_int(self.size) or not 0 <= self.size <= MAX_SIZE:
            raise _bad(where, "size", f"must be a whole number from 0 to 2**53, got {self.size!r}")
        if not isinstance(self.sha256, str) or not _SHA256.fullmatch(self.sha256):
            raise _bad(where, "sha256", f"must be 64 lowercase hex digits, got {self.sha256!r:.80}")
        if not isinstance(self.version, str) or not VERSION.fullmatch(self.version):
            raise _bad(where, "version", f"must be 1 to 64 of A-Z a-z 0-9 _ -, got {self.version!r:.80}")
        _check_piece_size(self.piece_size, where)
        if not isinstance(self.content_type, str) or not _CONTENT_TYPE.fullmatch(self.content_type):
            raise _bad(
                where, "content_type", f"must be 1 to 255 printable ASCII characters, got {self.content_type!r:.80}"
            )
        try:
            parse_rfc3339(self.created_at)
        except ValueError as exc:
            raise _bad(where, "created_at", f"is {exc}") from None
        if self.sync is not None:
            self.sync.validate(where)
        return self

    @classmethod
    def from_dict(cls, d: Any, key: str | None = None) -> ObjectMeta:
        """Validated metadata from its JSON object; fields we do not know are ignored."""
        where = _where(key)
        if not isinstance(d, dict):
            raise BadMetadata(f"{where}: expected a JSON object, got {type(d).__name__}")
        for required in ("name", "size", "sha256", "version", "piece_size", "created_at"):
            if required not in d:
                raise _bad(where, required, "is missing")
        name = d["name"]
        if not is_valid_name(name):
            raise _bad(where, "name", f"{name!r:.80} is not a valid object name ({NAME_RULE})")
        if d.get("id") is not None and d["id"] != object_id(name):
            # The id is the holder tag: a planted one would point fetchers at another object's holders.
            raise _bad(where, "id", f"{d['id']!r:.80} is not the md5 of the name")
        meta = cls(
            name=name,
            size=d["size"],
            sha256=d["sha256"],
            content_type=d.get("content_type") or DEFAULT_CONTENT_TYPE,
            created_at=d["created_at"],
            version=d["version"],
            piece_size=d["piece_size"],
            sync=SyncSpec.from_value(d.get("sync"), where),
        )
        return meta.validate(key)

    @classmethod
    def from_json(cls, raw: bytes | str | None, key: str | None = None) -> ObjectMeta:
        return cls.from_dict(_load_json(raw, MAX_META_BYTES, _where(key)), key)

    @classmethod
    def from_entry(cls, entry: dict, prefix: str | None = None) -> ObjectMeta:
        """Validated metadata of a KV entry (py-consul's dict with Key and Value).
        With `prefix` (`<ns>/`), the key must be exactly prefix + name."""
        key = entry.get("Key") if isinstance(entry, dict) else None
        if not isinstance(key, str):
            raise BadMetadata(f"not a KV entry: {entry!r:.80}")
        if prefix is not None and (not key.startswith(prefix) or "/" in key[len(prefix) :]):
            raise BadMetadata(f"metadata at {key}: not an object key directly under {prefix}")
        return cls.from_json(entry.get("Value"), key)


def parse_entries(
    entries: Iterable[dict] | None, prefix: str | None = None
) -> tuple[list[ObjectMeta], list[tuple[str, str]]]:
    """Split a recursive KV listing into valid metadata and (key, reason) for the bad
    entries, so one planted entry costs a WARNING, not the whole listing.  Keys that
    cannot be objects are neither: folders (ending in '/', as the Consul UI creates)
    and, with `prefix`, keys below a sub-prefix (another tool's, not ours to report)."""
    metas: list[ObjectMeta] = []
    bad: list[tuple[str, str]] = []
    for entry in entries or []:
        key = entry.get("Key") if isinstance(entry, dict) else None
        if isinstance(key, str) and (key.endswith("/") or (prefix is not None and "/" in key[len(prefix) :])):
            continue
        try:
            metas.append(ObjectMeta.from_entry(entry, prefix))
        except BadMetadata as exc:
            bad.append((key if isinstance(key, str) else repr(key), str(exc)))
    return metas, bad


# Piece digest algorithms a piece list may name ("algorithm"; absent: sha256, the format
# before BLAKE3).  BLAKE3 hashes ~3.5x faster than SHA-256 here (bench/relay_cost.py), and
# every relayed byte is hashed twice (its piece and the whole object); the whole-object
# digest stays SHA-256, the user-facing checksum.
PIECE_ALGORITHMS = ("sha256", "blake3")


def digests_field(algorithm: str) -> str:
    """The JSON field holding a piece list's digests."""
    return "sha256" if algorithm == "sha256" else "digests"


@dataclass
class PieceList:
    """Piece digests of one version.  Invariant for lists from `from_json`: a valid
    piece_size, a known algorithm and 64-hex digests; with `meta`, also exactly meta's
    piece count and piece size (`validate`).

    JSON: SHA-256 lists keep the original format, `{"piece_size": n, "sha256": [...]}`,
    which every version of the agent reads; other algorithms are named, and an algorithm
    this node does not know is refused (BadMetadata), never guessed:
    `{"piece_size": n, "algorithm": "blake3", "digests": [...]}`."""

    piece_size: int
    digests: list[str]
    algorithm: str = "sha256"

    def count(self) -> int:
        return len(self.digests)

    def to_json(self) -> bytes:
        d: dict[str, Any] = {"piece_size": self.piece_size}
        if self.algorithm != "sha256":
            d["algorithm"] = self.algorithm
        d[self.digests_field] = self.digests
        return json.dumps(d, separators=(",", ":")).encode()

    def validate(self, meta: ObjectMeta, key: str | None = None) -> PieceList:
        """Raise BadMetadata unless this list describes exactly `meta`'s pieces."""
        where = _where(key or f"{meta.name}/{meta.version}", "piece list")
        if self.piece_size != meta.piece_size:
            raise _bad(where, "piece_size", f"is {self.piece_size!r}, the metadata says {meta.piece_size}")
        if len(self.digests) != meta.piece_count:
            raise _bad(
                where,
                self.digests_field,
                f"has {len(self.digests)} digests; a size of {meta.size} "
                f"in pieces of {meta.piece_size} needs {meta.piece_count}",
            )
        return self

    @property
    def digests_field(self) -> str:
        return digests_field(self.algorithm)

    @classmethod
    def from_json(cls, raw: bytes | str, meta: ObjectMeta | None = None, key: str | None = None) -> PieceList:
        where = _where(key, "piece list")
        d = _load_json(raw, MAX_PIECES_BYTES, where)
        _check_piece_size(d.get("piece_size"), where)
        algorithm = d.get("algorithm", "sha256")
        if algorithm not in PIECE_ALGORITHMS:  # also refuses non-strings (never equal to one)
            raise _bad(
                where,
                "algorithm",
                f"is {algorithm!r:.80}, not a piece digest algorithm this node knows ({', '.join(PIECE_ALGORITHMS)})",
            )
        field_name = digests_field(algorithm)
        digests = d.get(field_name)
        if not isinstance(digests, list) or not digests:
            raise _bad(where, field_name, "must be a non-empty list of digests")
        for i, digest in enumerate(digests):
            if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
                raise _bad(where, f"{field_name}[{i}]", f"must be 64 lowercase hex digits, got {digest!r:.80}")
        pieces = cls(d["piece_size"], digests, algorithm)
        return pieces.validate(meta, key) if meta is not None else pieces
