"""The KV table: entries, tombstones, locks and lock-delay, with Consul's
index rules (a prefix's index counts deletes, identical writes change nothing).

Write methods take the caller's open Txn, so a session invalidation can
change many keys under one raft index as one Consul log entry does.
"""

from __future__ import annotations

import builtins
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ..codec import b64
from ..errors import StateError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .store import Store, Txn


@dataclass(frozen=True)
class Entry:
    key: str
    value: bytes
    flags: int
    session: str
    lock_index: int
    create_index: int
    modify_index: int

    def to_api(self) -> dict:
        """The server's DirEntry JSON: Session only when locked."""
        out = {"LockIndex": self.lock_index, "Key": self.key, "Flags": self.flags, "Value": b64(self.value)}
        if self.session:
            out["Session"] = self.session
        out.update(CreateIndex=self.create_index, ModifyIndex=self.modify_index)
        return out

    def same_content(self, other: Entry) -> bool:
        return (self.value, self.flags, self.session, self.lock_index) == (
            other.value,
            other.flags,
            other.session,
            other.lock_index,
        )


def topic(key: str) -> str:
    return "kv:" + key


class KV:
    """KV operations on the shared store."""

    def __init__(self, store: Store):
        self.store = store

    # -- reads (caller holds store.lock) -------------------------------------
    def _table_index(self) -> int:
        return self.store.max_index("kvs", "tombstones")

    def get(self, key: str) -> tuple[int, Entry | None, bool]:
        entry = self.store.kvs.get(key)
        if entry is None:
            return self._table_index(), None, False
        return entry.modify_index, entry, True

    def _under(self, prefix: str) -> list[Entry]:
        kvs = self.store.kvs
        return [kvs[k] for k in sorted(k for k in kvs if k.startswith(prefix))]

    def _prefix_index(self, prefix: str, entries: Iterable[Entry]) -> int:
        """Highest ModifyIndex under the prefix, deletes (tombstones) included,
        so removing a key raises the index of every prefix above it."""
        if not prefix:
            return self._table_index()
        index = max((e.modify_index for e in entries), default=0)
        graves = (i for k, i in self.store.tombstones.items() if k.startswith(prefix))
        index = max(index, max(graves, default=0))
        return index or self._table_index()

    def list(self, prefix: str) -> tuple[int, list[Entry], bool]:
        entries = self._under(prefix)
        return self._prefix_index(prefix, entries), entries, bool(entries)

    def in_lock_delay(self, key: str) -> bool:
        return self.store.lock_delay.get(key, 0.0) > time.monotonic()

    # -- writes (inside store.write()) ---------------------------------------
    def _store(self, txn: Txn, new: Entry) -> None:
        old = self.store.kvs.get(new.key)
        if old is not None and old.same_content(new):
            return  # identical write: no new ModifyIndex, nobody woken
        index = txn.touch("kvs", topic(new.key))
        created = old.create_index if old is not None else index
        self.store.kvs[new.key] = replace(new, create_index=created, modify_index=index)

    def set(self, txn: Txn, key: str, value: bytes, flags: int) -> bool:
        old = self.store.kvs.get(key)
        session, lock_index = (old.session, old.lock_index) if old else ("", 0)
        self._store(txn, Entry(key, value, flags, session, lock_index, 0, 0))
        return True

    def cas(self, txn: Txn, key: str, value: bytes, flags: int, cas: int) -> bool:
        old = self.store.kvs.get(key)
        if (cas == 0 and old is not None) or (cas != 0 and (old is None or old.modify_index != cas)):
            return False
        return self.set(txn, key, value, flags)

    def lock(self, txn: Txn, key: str, value: bytes, flags: int, session: str) -> bool:
        # The leader rejects acquires in lock-delay before validating anything.
        if self.in_lock_delay(key):
            return False
        if not session:
            raise StateError("missing session")
        if session not in self.store.sessions:
            raise StateError(f'invalid session "{session}"')
        old = self.store.kvs.get(key)
        if old is not None and old.session and old.session != session:
            return False
        lock_index = old.lock_index if old else 0
        if old is None or old.session != session:
            lock_index += 1
        self._store(txn, Entry(key, value, flags, session, lock_index, 0, 0))
        return True

    def unlock(self, txn: Txn, key: str, value: bytes, flags: int, session: str) -> bool:
        old = self.store.kvs.get(key)
        if old is None or not session or old.session != session:
            return False
        self._store(txn, Entry(key, value, flags, "", old.lock_index, 0, 0))
        return True

    def release_session(self, txn: Txn, key: str) -> None:
        """Session invalidation with behavior=release: unlock, keep the value."""
        old = self.store.kvs[key]
        self._store(txn, replace(old, session=""))

    def delete(self, txn: Txn, key: str) -> bool:
        if key not in self.store.kvs:
            return True
        del self.store.kvs[key]
        self.store.tombstones[key] = txn.touch("kvs", topic(key))
        txn.touch("tombstones")
        return True

    def delete_tree(self, txn: Txn, prefix: str) -> bool:
        for entry in self._under(prefix):
            self.delete(txn, entry.key)
        return True

    def delete_cas(self, txn: Txn, key: str, cas: int) -> bool:
        old = self.store.kvs.get(key)
        if old is None:
            return True
        if old.modify_index != cas:
            return False
        return self.delete(txn, key)

    def keys_held_by(self, session: str) -> builtins.list[str]:  # builtins.: the class has a list()
        return [k for k, e in self.store.kvs.items() if e.session == session]


def fold_keys(entries: Iterable[Entry], prefix: str, separator: str) -> list[str]:
    """The ?keys listing: with a separator, everything after the first one
    that follows the prefix folds into one "directory" key."""
    keys: list[str] = []
    for entry in entries:
        key = entry.key
        if separator:
            cut = key.find(separator, len(prefix))
            if cut >= 0:
                key = key[: cut + len(separator)]
        if not keys or keys[-1] != key:
            keys.append(key)
    return keys
