"""The node's data directory: complete objects, temp files, and what we know of each.

Layout (object names never start with '.', so these can't collide with objects):
  <data_dir>/<name>                         complete, verified objects (as the Go tuggle)
  <data_dir>/.tmp/                          uploads and fetches in progress
  <data_dir>/.tuggle/objects/<id>.json      the sidecar: metadata the copy was verified
                                            against, and the file's size/mtime/inode then
  <data_dir>/.tuggle/lock                   held by the running `serve` (one per data dir)

An object becomes visible only by rename(2) from .tmp/, after fsync, with its sidecar
written first: a half-written file is never at <data_dir>/<name>.  A file without a
sidecar was not put there by us and is left alone.  A copy whose size no longer matches
its sidecar is corrupt; one whose mtime or inode changed must be re-verified before it
is served (`LocalObject.stat_changed`).  Temp and sidecar files are named by object id,
so a 255-character name still fits the filesystem's name limit.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from ..objects.metadata import ObjectMeta
from ..objects.names import check_name, is_valid_name, object_id

log = logging.getLogger(__name__)


class DataDirLocked(RuntimeError):
    """Another process serves this data dir."""


@dataclass
class LocalObject:
    meta: ObjectMeta
    path: Path
    source: str = ""
    status: dict = field(default_factory=dict)
    stat: list[int] = field(default_factory=list)  # [size, mtime_ns, inode] at commit

    def stat_changed(self) -> bool:
        """True if the file was touched since it was committed (re-verify before serving)."""
        try:
            st = self.path.stat()
        except OSError:
            return True
        return bool(self.stat) and [st.st_size, st.st_mtime_ns, st.st_ino] != self.stat


def _stat_of(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino]


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
        self._lock_fd: int | None = None

    def lock_exclusively(self) -> None:
        """Claim the data dir for this process (flock: released by the kernel when we die)."""
        fd = os.open(self.state / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise DataDirLocked(
                    f"another tuggle-agent is already serving {self.root} (it holds "
                    f"{self.state / 'lock'}); stop it first or give this one another data_dir"
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def path(self, name: str) -> Path:
        return self.root / check_name(name)

    def _sidecar(self, name: str) -> Path:
        return self.sidecars / f"{object_id(check_name(name))}.json"

    def temp_file(self, name: str, purpose: str):
        """An open binary file in .tmp/ (same filesystem, so the final rename is atomic)."""
        fd, tmp = tempfile.mkstemp(dir=self.tmp, prefix=f"{purpose}.{object_id(check_name(name))}.")
        return Path(tmp), os.fdopen(fd, "w+b")

    def commit(self, temp: Path, meta: ObjectMeta, source: str = "") -> LocalObject:
        """Move a verified, fsynced temp file into place with its sidecar."""
        obj = LocalObject(meta, self.path(meta.name), source, stat=_stat_of(temp))
        self._write_sidecar(obj)
        os.replace(temp, obj.path)
        _fsync_dir(self.root)
        return obj

    def _write_sidecar(self, obj: LocalObject) -> None:
        data = {"meta": obj.meta.to_dict(), "source": obj.source, "status": obj.status, "stat": obj.stat}
        _write_atomic(self._sidecar(obj.meta.name), json.dumps(data, indent=1).encode())

    def get(self, name: str) -> LocalObject | None:
        """The complete copy of `name`, or None (absent, no valid sidecar, or wrong size)."""
        path, side = self.path(name), self._sidecar(name)
        try:
            size = path.stat().st_size
        except OSError:
            return None
        try:
            data = json.loads(side.read_text())
            meta = ObjectMeta.from_dict(data["meta"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if meta is None or meta.name != name or size != meta.size:
            return None
        stat = data.get("stat")
        stat = stat if isinstance(stat, list) and len(stat) == 3 and all(isinstance(x, int) for x in stat) else []
        return LocalObject(meta, path, str(data.get("source", "")), data.get("status") or {}, stat)

    def sidecar_meta(self, name: str) -> ObjectMeta | None:
        """The metadata our sidecar recorded for `name`, even if the file is gone or damaged."""
        try:
            return ObjectMeta.from_dict(json.loads(self._sidecar(name).read_text())["meta"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def set_status(self, name: str, **status) -> None:
        obj = self.get(name)
        if obj is not None:
            obj.status.update(status)
            self._write_sidecar(obj)

    def refresh_stat(self, name: str) -> None:
        """Record the file's current stat after a successful re-verification."""
        obj = self.get(name)
        if obj is not None:
            obj.stat = _stat_of(obj.path)
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

    def sidecar_names(self) -> list[str]:
        """Names recorded in sidecars (with or without a file)."""
        out = []
        for p in self.sidecars.glob("*.json"):
            try:
                name = json.loads(p.read_text())["meta"]["name"]
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if is_valid_name(name) and p.stem == object_id(name):
                out.append(name)
        return sorted(out)

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
