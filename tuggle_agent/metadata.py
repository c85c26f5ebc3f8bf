"""What the cluster knows about an object: its metadata and its piece digests.

The metadata keeps the Go tuggle's JSON fields (`id`, `name`, `content_type`,
`size`, `created_at`) so existing readers of `<ns>/<name>` still work, and adds
`sha256` (whole-object digest), `version` (a fresh id per PUT, so a DELETE then
PUT of the same name is a different object everywhere), `piece_size` and `sync`
(prefetch request with Consul-style node/service/tag filters).

Piece digests let a fetcher check every piece as it arrives: a corrupt or lying
holder is caught on its first bad piece, and only verified bytes are ever
streamed on to a client or a peer.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from email.utils import format_datetime

from .names import is_valid_name, object_id

DEFAULT_CONTENT_TYPE = "application/octet-stream"
# Small pieces keep relay hops short: a node forwards a piece only once it is verified,
# so each hop of a chain adds about one piece time (64 KiB at 8 MiB/s = 8 ms).
MIN_PIECE = 64 * 1024
MAX_PIECES = 1024


def piece_size_for(size: int) -> int:
    """Smallest power of two >= MIN_PIECE giving at most MAX_PIECES pieces."""
    p = MIN_PIECE
    while p * MAX_PIECES < size:
        p *= 2
    return p


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass
class SyncSpec:
    """A prefetch request; filters are Consul event filter regexes ('' = any)."""
    node: str = ""
    service: str = ""
    tag: str = ""
    requested_at: str = ""


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
        return datetime.fromisoformat(self.created_at.replace("Z", "+00:00"))

    @property
    def last_modified(self) -> str:
        return format_datetime(self.created, usegmt=True)

    def to_dict(self) -> dict:
        d = asdict(self)
        order = ["id", "name", "content_type", "size", "created_at", "sha256", "version", "piece_size", "sync"]
        return {k: d[k] for k in order}

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()

    @classmethod
    def from_dict(cls, d: dict) -> "ObjectMeta":
        sync = d.get("sync")
        return cls(name=d["name"], size=int(d["size"]), sha256=d.get("sha256") or "",
                   content_type=d.get("content_type") or DEFAULT_CONTENT_TYPE,
                   created_at=d.get("created_at") or now_rfc3339(),
                   version=d.get("version") or "", piece_size=int(d.get("piece_size") or MIN_PIECE),
                   sync=SyncSpec(**sync) if isinstance(sync, dict) else None)

    @classmethod
    def from_json(cls, raw: bytes) -> "ObjectMeta":
        return cls.from_dict(json.loads(raw))

    @classmethod
    def from_entry(cls, entry: dict) -> "ObjectMeta | None":
        """A KV entry under <ns>/, or None for keys that are not ours (foreign or broken)."""
        try:
            meta = cls.from_json(entry["Value"])
        except (TypeError, ValueError, KeyError):
            return None
        return meta if is_valid_name(meta.name) and entry["Key"].endswith("/" + meta.name) else None


@dataclass
class PieceList:
    piece_size: int
    digests: list[str]

    def count(self) -> int:
        return len(self.digests)

    def to_json(self) -> bytes:
        return json.dumps({"piece_size": self.piece_size, "sha256": self.digests}, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> "PieceList":
        d = json.loads(raw)
        return cls(int(d["piece_size"]), list(d["sha256"]))


class Digester:
    """Feeds bytes in order; yields the whole-object SHA-256 and per-piece digests."""

    def __init__(self, piece_size: int):
        self.piece_size = piece_size
        self.whole = hashlib.sha256()
        self.piece = hashlib.sha256()
        self.piece_fill = 0
        self.size = 0
        self.digests: list[str] = []

    def update(self, data: bytes | memoryview) -> list[str]:
        """Returns the digests of the pieces this call completed."""
        self.whole.update(data)
        self.size += len(data)
        done = []
        view = memoryview(data)
        while view:
            take = min(len(view), self.piece_size - self.piece_fill)
            self.piece.update(view[:take])
            self.piece_fill += take
            view = view[take:]
            if self.piece_fill == self.piece_size:
                done.append(self._close_piece())
        return done

    def _close_piece(self) -> str:
        d = self.piece.hexdigest()
        self.digests.append(d)
        self.piece = hashlib.sha256()
        self.piece_fill = 0
        return d

    def finish(self) -> tuple[str, list[str]]:
        """Close the short last piece (or the only piece of an empty object)."""
        if self.piece_fill or self.size == 0:
            self._close_piece()
        return self.whole.hexdigest(), self.digests


class PieceMismatch(ValueError):
    pass


class Verifier:
    """Checks bytes arriving in order against the expected digests.

    `verified` counts bytes a reader may see: whole pieces that matched, and the
    last piece only once the whole-object SHA-256 matched as well.
    """

    def __init__(self, meta: "ObjectMeta", pieces: PieceList):
        if pieces.piece_size != meta.piece_size:
            raise PieceMismatch(f"{meta.name}: the piece list does not belong to this version")
        self.meta = meta
        self.pieces = pieces
        self.digester = Digester(pieces.piece_size)
        self.verified = 0

    @property
    def received(self) -> int:
        return self.digester.size

    @property
    def complete(self) -> bool:
        return self.verified == self.meta.size and self.received == self.meta.size

    def feed(self, data: bytes) -> None:
        if self.received + len(data) > self.meta.size:
            raise PieceMismatch(f"more than the {self.meta.size} bytes of {self.meta.name}")
        first = len(self.digester.digests)
        for i, digest in enumerate(self.digester.update(data), first):
            self._check(i, digest)
        if self.received == self.meta.size:
            self._finish()

    def _finish(self) -> None:
        closing = len(self.digester.digests)
        whole, digests = self.digester.finish()
        for i in range(closing, len(digests)):
            self._check(i, digests[i])
        if whole != self.meta.sha256:
            raise PieceMismatch(f"whole-object SHA-256 of {self.meta.name} is {whole}, metadata says {self.meta.sha256}")
        self.verified = self.meta.size

    def _check(self, index: int, digest: str) -> None:
        if index >= len(self.pieces.digests) or digest != self.pieces.digests[index]:
            raise PieceMismatch(f"piece {index} of {self.meta.name} failed SHA-256 verification")
        end = min((index + 1) * self.pieces.piece_size, self.meta.size)
        if end < self.meta.size:
            self.verified = end

    def finish_empty(self) -> None:
        if self.meta.size == 0 and not self.complete:
            self._finish()

    def rewind(self, f) -> None:
        """Forget bytes past `verified` (a bad or broken source) and re-hash the good prefix."""
        keep = self.verified
        self.digester = Digester(self.pieces.piece_size)
        f.seek(0)
        left = keep
        while left:
            block = f.read(min(left, 1 << 20))
            self.digester.update(block)
            left -= len(block)
        f.truncate(keep)
        f.seek(keep)
