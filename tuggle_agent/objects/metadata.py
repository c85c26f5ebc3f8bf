"""What the cluster knows about an object: its metadata and its piece digests.

The metadata keeps the Go tuggle's JSON fields (`id`, `name`, `content_type`,
`size`, `created_at`) so existing readers of `<ns>/<name>` still work, and adds
`sha256` (whole-object digest), `version` (a fresh id per PUT, so a DELETE then
PUT of the same name is a different object everywhere), `piece_size` and `sync`
(prefetch request with Consul-style node/service/tag filters).

Piece digests (checked by verify.py) let a fetcher check every piece as it arrives:
a corrupt or lying holder is caught on its first bad piece, and only verified bytes
are ever streamed on to a client or a peer.
"""

from __future__ import annotations

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
