"""Hashing bytes in order: digests for an upload, and piece-by-piece checks for a fetch."""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Callable
from typing import Any

import blake3

from .metadata import ObjectMeta, PieceList

# Piece digest algorithms (metadata.PIECE_ALGORITHMS): a new hasher, and the name in messages.
PIECE_HASHERS: dict[str, tuple[Callable[[], Any], str]] = {
    "sha256": (hashlib.sha256, "SHA-256"),
    "blake3": (blake3.blake3, "BLAKE3"),
}


class Digester:
    """Feeds bytes in order; yields the whole-object SHA-256 and per-piece digests
    (`algorithm`: a key of PIECE_HASHERS)."""

    def __init__(self, piece_size: int, algorithm: str = "sha256"):
        self.piece_size = piece_size
        self.algorithm = algorithm
        self._new_piece = PIECE_HASHERS[algorithm][0]
        self.whole = hashlib.sha256()
        self.piece = self._new_piece()
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
        self.piece = self._new_piece()
        self.piece_fill = 0
        return d

    def finish(self) -> tuple[str, list[str]]:
        """Close the short last piece (or the only piece of an empty object)."""
        if self.piece_fill or self.size == 0:
            self._close_piece()
        return self.whole.hexdigest(), self.digests


class BackgroundDigester:
    """A Digester fed by a worker thread, so hashing overlaps the caller's socket reads and
    file writes (hashlib and blake3 release the GIL on large buffers: on two cores an upload
    runs at the speed of the slower of the two, not of their sum).  `update` keeps a
    reference to `data` until it is hashed: pass bytes, never a buffer that is reused.
    At most `depth` blocks wait, which bounds the memory.  Use as a context manager, so the
    thread ends however the caller leaves."""

    def __init__(self, digester: Digester, depth: int = 8):
        self.digester = digester
        self.size = 0  # bytes given, hashed or not
        self._queue: queue.Queue[bytes | memoryview | None] = queue.Queue(depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="digest", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (data := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self.digester.update(data)
                except BaseException as exc:  # handed to the caller by finish()
                    self._error = exc

    def update(self, data: bytes | memoryview) -> None:
        self.size += len(data)
        self._queue.put(data)

    def finish(self) -> tuple[str, list[str]]:
        """Wait for every block to be hashed; then as Digester.finish."""
        self._stop()
        if self._error is not None:
            raise self._error
        return self.digester.finish()

    def _stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def __enter__(self) -> BackgroundDigester:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop()


class PieceMismatch(ValueError):
    pass


class Verifier:
    """Checks bytes arriving in order against the expected digests.

    `verified` counts bytes a reader may see: whole pieces that matched, and the
    last piece only once the whole-object SHA-256 matched as well.
    """

    def __init__(self, meta: ObjectMeta, pieces: PieceList):
        if pieces.piece_size != meta.piece_size:
            raise PieceMismatch(f"{meta.name}: the piece list does not belong to this version")
        self.meta = meta
        self.pieces = pieces
        self.digester = Digester(pieces.piece_size, pieces.algorithm)
        self.verified = 0

    @property
    def received(self) -> int:
        return self.digester.size

    @property
    def complete(self) -> bool:
        return self.verified == self.meta.size and self.received == self.meta.size

    def feed(self, data: bytes | memoryview) -> None:
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
            raise PieceMismatch(
                f"whole-object SHA-256 of {self.meta.name} is {whole}, metadata says {self.meta.sha256}"
            )
        self.verified = self.meta.size

    def _check(self, index: int, digest: str) -> None:
        if index >= len(self.pieces.digests) or digest != self.pieces.digests[index]:
            label = PIECE_HASHERS[self.pieces.algorithm][1]
            raise PieceMismatch(f"piece {index} of {self.meta.name} failed verification ({label} digest differs)")
        end = min((index + 1) * self.pieces.piece_size, self.meta.size)
        if end < self.meta.size:
            self.verified = end

    def finish_empty(self) -> None:
        if self.meta.size == 0 and not self.complete:
            self._finish()

    def rewind(self, f) -> None:
        """Forget bytes past `verified` (a bad or broken source) and re-hash the good prefix."""
        keep = self.verified
        self.digester = Digester(self.pieces.piece_size, self.pieces.algorithm)
        f.seek(0)
        left = keep
        while left:
            block = f.read(min(left, 1 << 20))
            self.digester.update(block)
            left -= len(block)
        f.truncate(keep)
        f.seek(keep)
