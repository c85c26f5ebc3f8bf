"""KV operations of a `/v1/txn` transaction, as Consul's state store runs them
(agent/consul/state/txn.go txnKVS): every op is dispatched in order, each
failure is recorded with its op index, and if any op failed the whole
transaction is rolled back -- no key changes, no index moves, nobody is woken.

Consul gets the rollback for free from go-memdb (the write txn is aborted);
here the first touch of each key saves its entry and tombstone, and an
aborted transaction puts them back along with the raft and table indexes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import StateError

if TYPE_CHECKING:
    from .kv import KV, Entry
    from .store import Txn

WRITE_VERBS = frozenset({"set", "cas", "lock", "unlock", "delete", "delete-cas", "delete-tree"})
READ_VERBS = frozenset({"get", "get-tree", "check-index", "check-session", "check-not-exists"})
VERBS = WRITE_VERBS | READ_VERBS


@dataclass(frozen=True)
class KVOp:
    verb: str
    key: str
    value: bytes = b""
    flags: int = 0
    index: int = 0  # ModifyIndex for cas, delete-cas, check-index
    session: str = ""


class _Fail(Exception):
    """One op's failure: its text goes into the transaction's Errors."""


class _Journal:
    """What the transaction changed, to undo it."""

    def __init__(self, kv: KV):
        self.kv = kv
        store = kv.store
        self.index = store.index
        self.table_index = dict(store.table_index)
        self.saved: dict[str, tuple[Entry | None, int | None]] = {}

    def keep(self, *keys: str) -> None:
        store = self.kv.store
        for key in keys:
            if key not in self.saved:
                self.saved[key] = (store.kvs.get(key), store.tombstones.get(key))

    def undo(self, txn: Txn) -> None:
        store = self.kv.store
        for key, (entry, grave) in self.saved.items():
            if entry is None:
                store.kvs.pop(key, None)
            else:
                store.kvs[key] = entry
            if grave is None:
                store.tombstones.pop(key, None)
            else:
                store.tombstones[key] = grave
        store.index = self.index
        store.table_index.clear()
        store.table_index.update(self.table_index)
        txn.topics.clear()  # nothing changed: wake nobody


def apply(kv: KV, txn: Txn, ops: list[KVOp]) -> tuple[list[tuple[Entry, bool]], list[tuple[int, str]]]:
    """Run `ops` inside `txn` (an open store.write()). Returns (results, errors):
    results are (entry, with_value) pairs -- reads keep the value, writes and
    checks answer the entry without it -- and errors (op index, what) are empty
    unless the transaction was rolled back."""
    journal = _Journal(kv)
    results: list[tuple[Entry, bool]] = []
    errors: list[tuple[int, str]] = []
    for i, op in enumerate(ops):
        try:
            results.extend(_run(kv, txn, journal, op))
        except _Fail as err:
            errors.append((i, str(err)))
        except StateError as err:  # e.g. an invalid session, as kvsLockTxn reports it
            errors.append((i, str(err)))
    if errors:
        journal.undo(txn)
        return [], errors
    return results, []


def _run(kv: KV, txn: Txn, journal: _Journal, op: KVOp) -> list[tuple[Entry, bool]]:
    store = kv.store
    key, verb = op.key, op.verb
    if verb in WRITE_VERBS:
        journal.keep(*([e.key for e in kv.list(key)[1]] if verb == "delete-tree" else [key]))
    current = store.kvs.get(key)
    if verb == "set":
        kv.set(txn, key, op.value, op.flags)
    elif verb == "cas":
        if not kv.cas(txn, key, op.value, op.flags, op.index):
            raise _Fail(f'failed to set key "{key}", index is stale')
    elif verb == "lock":
        if kv.in_lock_delay(key):  # Consul's preCheck refuses it before the apply
            raise _Fail(f'failed to lock key "{key}" due to lock delay')
        if not kv.lock(txn, key, op.value, op.flags, op.session):
            raise _Fail(f'failed to lock key "{key}", lock is already held')
    elif verb == "unlock":
        if not kv.unlock(txn, key, op.value, op.flags, op.session):
            raise _Fail(f'failed to unlock key "{key}", lock isn\'t held, or is held by another session')
    elif verb == "delete":
        kv.delete(txn, key)
        return []
    elif verb == "delete-cas":
        if not kv.delete_cas(txn, key, op.index):
            raise _Fail(f'failed to delete key "{key}", index is stale')
        return []
    elif verb == "delete-tree":
        kv.delete_tree(txn, key)
        return []
    elif verb == "get":
        if current is None:
            raise _Fail(f'key "{key}" doesn\'t exist')
        return [(current, True)]
    elif verb == "get-tree":
        return [(e, True) for e in kv.list(key)[1]]
    elif verb == "check-index":
        if current is None:
            raise _Fail(f'failed to check index, key "{key}" doesn\'t exist')
        if current.modify_index != op.index:
            raise _Fail(
                f'failed index check for key "{key}", current modify index {current.modify_index} != {op.index}'
            )
        return [(current, False)]
    elif verb == "check-session":
        if current is None:
            raise _Fail(f'failed to check session, key "{key}" doesn\'t exist')
        if current.session != op.session:
            raise _Fail(f'failed session check for key "{key}", current session "{current.session}" != "{op.session}"')
        return [(current, False)]
    elif verb == "check-not-exists":
        if current is not None:
            raise _Fail(f'key "{key}" exists')
        return []
    else:
        raise _Fail(f'unknown KV verb "{verb}"')
    return [(store.kvs[key], False)]
