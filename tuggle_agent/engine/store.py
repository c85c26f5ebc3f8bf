"""The node's data directory: complete objects, temp files, and what we know of each.

Layout (object names never start with '.', so these can't collide with objects):
  <data_dir>/<name>                  complete, verified objects (as the Go tuggle)
  <data_dir>/.tmp/                   uploads and fetches in progress
  <data_dir>/.tuggle/objects/<name>.json   the metadata the local copy was verified against

An object becomes visible only by rename(2) from .tmp/, after fsync, with its
sidecar written first: a half-written file is never at <data_dir>/<name>, and a
file without a sidecar is treated as debris.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from ..objects.metadata import ObjectMeta
from ..objects.names import check_name, is_valid_name

log = logging.getLogger(__name__)


@dataclass
class LocalObject:
    meta: ObjectMeta
    path: Path
    source: str = ""
    status: dict = field(default_factory=dict)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class LocalStore:
    def __init__(self, data_dir: Path):
        self.root = Path(data_dir)
        self.tmp = self.root / ".tmp"
        self.state = self.root / ".tuggle"
        self.sidecars = self.state / "objects"
        for d in (self.root, self.tmp, self.sidecars):
            d.mkdir(parents=True, exist_ok=True)
        # Held across "check Consul, then commit or remove" so an upload, a fetch and
        # a delete of the same name can't interleave.
        self.lock = threading.RLock()

    def path(self, name: str) -> Path:
        return self.root / check_name(name)

    def _sidecar(self, name: str) -> Path:
        return self.sidecars / f"{check_name(name)}.json"

    def temp_file(self, name: str, purpose: str):
        """An open binary file in .tmp/ (same filesystem, so the final rename is atomic)."""
        fd, tmp = tempfile.mkstemp(dir=self.tmp, prefix=f"{purpose}.{check_name(name)}.")
        return Path(tmp), os.fdopen(fd, "w+b")

    def commit(self, temp: Path, meta: ObjectMeta, source: str = "") -> LocalObject:
        """Move a verified, fsynced temp file into place with its sidecar."""
        obj = LocalObject(meta, self.path(meta.name), source)
        self._write_sidecar(obj)
        os.replace(temp, obj.path)
        _fsync_dir(self.root)
        return obj

    def _write_sidecar(self, obj: LocalObject) -> None:
        data = {"meta": obj.meta.to_dict(), "source": obj.source, "status": obj.status}
        _write_atomic(self._sidecar(obj.meta.name), json.dumps(data, indent=1).encode())

    def get(self, name: str) -> LocalObject | None:
        path, side = self.path(name), self._sidecar(name)
        if not path.is_file():
            return None
        try:
            data = json.loads(side.read_text())
            meta = ObjectMeta.from_dict(data["meta"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if meta.name != name or path.stat().st_size != meta.size:
            return None
        return LocalObject(meta, path, data.get("source", ""), data.get("status") or {})

    def set_status(self, name: str, **status) -> None:
        obj = self.get(name)
        if obj is not None:
            obj.status.update(status)
            self._write_sidecar(obj)

    def remove(self, name: str) -> bool:
        """Drop the object (file first, so a crash in between leaves no servable file)."""
        existed = self.path(name).exists()
        self.path(name).unlink(missing_ok=True)
        self._sidecar(name).unlink(missing_ok=True)
        return existed

    def names(self) -> list[str]:
        """Names of files in the data dir, complete or not (reconciliation decides)."""
        return sorted(p.name for p in self.root.iterdir() if p.is_file() and is_valid_name(p.name))

    def orphan_sidecars(self) -> list[str]:
        return sorted(p.stem for p in self.sidecars.glob("*.json")
                      if is_valid_name(p.stem) and not self.path(p.stem).exists())

    def clean_temp(self) -> int:
        """Remove leftovers of uploads/fetches a previous run did not finish."""
        n = 0
        for p in self.tmp.iterdir():
            try:
                p.unlink()
                n += 1
            except OSError as exc:
                log.warning("cannot remove leftover temp file %s: %s", p, exc)
        return n
