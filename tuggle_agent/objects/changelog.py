"""The change-log: the last changes to a namespace's objects, in one small KV key
(`<ns>.changes`, see consul/keys.py) that every node watches instead of the whole
`<ns>/` prefix, so that one change costs each node a bounded read, not one that grows
with the number of objects.

  {"v": 1, "changes": [{"seq": 41, "op": "put", "name": "app.tgz", "version": "9f…"}, …]}

Oldest first, sequence numbers consecutive, at most LENGTH entries. Every writer
appends with check-and-set (consul/kv.py). An entry is a hint and nothing more: a node
that reads one re-reads `<ns>/<name>` and that name's tombstones and decides with the
same code as a full reconcile (engine/reconcile.py). A node that cannot tell what it
missed -- a gap (more than LENGTH changes since it last looked), a log that restarted,
a malformed or forged value -- falls back to one full reconcile.

Pure: no I/O. The value comes from KV, so `parse` treats it as untrusted.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from .metadata import VERSION
from .names import is_valid_name

FORMAT = 1
LENGTH = 32  # entries kept: a burst of more changes than this between two watch runs costs a full reconcile
MAX_BYTES = 64 * 1024  # a full log of 255-character names is ~11 KiB; anything larger is not ours
OPS = ("put", "sync", "delete")


@dataclass(frozen=True)
class Change:
    seq: int
    op: str
    name: str
    version: str


def parse(raw: bytes | str | None) -> list[Change] | None:
    """The entries of a well-formed log, oldest first; None for anything else."""
    if raw is None or len(raw) > MAX_BYTES:
        return None
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict) or doc.get("v") != FORMAT or not isinstance(doc.get("changes"), list):
        return None
    entries = doc["changes"]
    if not 1 <= len(entries) <= LENGTH:
        return None
    out: list[Change] = []
    for e in entries:
        if not isinstance(e, dict):
            return None
        seq, op, name, version = e.get("seq"), e.get("op"), e.get("name"), e.get("version")
        if (
            type(seq) is not int  # not bool, not float
            or seq < 1
            or op not in OPS
            or not isinstance(name, str)
            or not is_valid_name(name)
            or not isinstance(version, str)
            or not VERSION.fullmatch(version)
        ):
            return None
        if out and seq != out[-1].seq + 1:
            return None
        out.append(Change(seq, op, name, version))
    return out


def appended(changes: list[Change] | None, op: str, name: str, version: str, restart: bool = False) -> list[Change]:
    """`changes` with one more entry, the oldest dropped past LENGTH. With `restart`
    (a writer that could not win the check-and-set: it overwrites the log), the new
    entry's number jumps past anything a reader can have seen, so every reader finds a
    gap and reconciles fully instead of trusting a log that lost entries."""
    assert op in OPS
    newest = changes[-1].seq if changes else 0
    if restart:
        return [Change(newest + LENGTH + 1, op, name, version)]
    return [*(changes or []), Change(newest + 1, op, name, version)][-LENGTH:]


def encode(changes: list[Change]) -> bytes:
    return json.dumps({"v": FORMAT, "changes": [asdict(c) for c in changes]}, separators=(",", ":")).encode()


def pending(changes: list[Change], applied: int) -> list[Change] | None:
    """The entries after `applied` (the last sequence number a node acted on); None when
    this log cannot say what happened since: it no longer holds `applied + 1` (a gap),
    or it restarted below `applied`."""
    newest = changes[-1].seq
    if newest < applied:
        return None
    if newest == applied:
        return []
    if changes[0].seq > applied + 1:
        return None
    return [c for c in changes if c.seq > applied]
