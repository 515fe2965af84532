"""The chain database: one store holding blocks, state, tx index and meta.

The one rule: a committed height is written as ONE synced WriteBatch containing the block,
its commit certificate, the state changes, the state's (height, app hash), the tx index
entries and the latest-height record. LevelDB applies a batch entirely or not at all, so
after a crash at any moment the store holds height h with its state, or height h-1 with
its state, never a mix. `open` checks that invariant and refuses a store that breaks it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from storage.blocks import BlockStore, check_height
from storage.errors import StorageError, StoreCorruptionError
from storage.kv import KVSnapshot, KVStore, MemoryStore, WriteBatch
from storage.layout import NS_META
from storage.state import STATE_CACHE_BYTES, StateChange, StateMeta, StateStore
from storage.txindex import TxIndex, TxIndexEntry

_RESERVED_META = (b"block_height", b"state")


def crash_point(name: str) -> None:
    """A no-op hook; node/crashpoints.py replaces it when crash tests are active."""


class ChainDB:
    """Facade over one KVStore. Single writer: the node's commit path."""

    def __init__(self, store: KVStore, state_cache_bytes: int = STATE_CACHE_BYTES,
                 uncached_state_prefixes: tuple[bytes, ...] = ()) -> None:
        self.store = store
        self.blocks = BlockStore(store)
        self.state = StateStore(store, cache_bytes=state_cache_bytes,
                                uncached_prefixes=uncached_state_prefixes)
        self.txs = TxIndex(store)
        self._last_height = self._check_consistency()

    @classmethod
    def open(
        cls, path: str | os.PathLike[str] | None, backend: str = "leveldb", *,
        state_cache_bytes: int = STATE_CACHE_BYTES,
        uncached_state_prefixes: tuple[bytes, ...] = (), **options: Any
    ) -> ChainDB:
        """Open (creating if needed) the chain database. backend: "leveldb" or "memory";
        `options` go to the LevelDB store."""
        if backend == "memory":
            return cls(MemoryStore(), state_cache_bytes, uncached_state_prefixes)
        if backend != "leveldb":
            raise StorageError(f"unknown storage backend {backend!r} (leveldb or memory)")
        if path is None:
            raise StorageError("the leveldb backend needs a data directory")
        from storage.leveldb import LevelDBStore  # plyvel only when used

        return cls(LevelDBStore(path, **options), state_cache_bytes, uncached_state_prefixes)

    def _check_consistency(self) -> int | None:
        block_height = self.blocks.latest_height()
        meta = self.state.meta()
        if block_height is None:
            return None
        if meta is None or meta.height != block_height:
            state_at = None if meta is None else meta.height
            raise StoreCorruptionError(
                f"blocks end at height {block_height} but state is at {state_at}: "
                "the store was not written by one-batch commits"
            )
        return block_height

    def last_committed_height(self) -> int | None:
        """Height of the last committed block, or None before the first block."""
        return self._last_height

    def state_meta(self) -> StateMeta | None:
        return self.state.meta()

    def write_genesis_state(
        self, changes: Iterable[StateChange], app_hash: bytes, height: int = 0, sync: bool = True
    ) -> None:
        """Store the genesis state (at `height`, usually initial_height - 1) before block one."""
        if self._last_height is not None or self.state.meta() is not None:
            raise StorageError("genesis state can only be written into an empty database")
        batch = WriteBatch()
        self.state.apply(batch, changes)
        self.state.put_meta(batch, height, app_hash)
        self.store.write(batch, sync=sync)
        self.state.forget()

    def commit(
        self,
        *,
        height: int,
        block_hash: bytes,
        block_bytes: bytes,
        commit_bytes: bytes,
        state_changes: Iterable[StateChange],
        app_hash: bytes,
        tx_entries: Iterable[TxIndexEntry] = (),
        meta: Iterable[tuple[bytes, bytes]] = (),
        sync: bool = True,
    ) -> None:
        """Write everything height `height` changes as one atomic, synced batch."""
        self._check_next_height(check_height(height))
        batch = WriteBatch()
        changes = state_changes if isinstance(state_changes, list) else list(state_changes)
        self.blocks.put(batch, height, block_hash, block_bytes, commit_bytes)
        self.state.apply(batch, changes)
        self.state.put_meta(batch, height, app_hash)
        self.txs.index(batch, height, tx_entries)
        for name, value in meta:
            self.put_meta(batch, name, value)
        crash_point("chaindb.before_write")
        self.store.write(batch, sync=sync)
        self.state.remember(changes)
        crash_point("chaindb.after_write")
        self._last_height = height

    def _check_next_height(self, height: int) -> None:
        if self._last_height is not None:
            expected = self._last_height + 1
        else:
            state = self.state.meta()
            expected = None if state is None else state.height + 1
        if expected is not None and height != expected:
            raise StorageError(f"cannot commit height {height}: the next height is {expected}")

    def get_meta(self, name: bytes) -> bytes | None:
        return self.store.get(NS_META + name)

    def snapshot(self) -> ChainSnapshot:
        """The committed chain as of now, readable on another thread (see ChainSnapshot)."""
        return ChainSnapshot(self.store.snapshot())

    def put_meta(self, batch: WriteBatch, name: bytes, value: bytes) -> None:
        """A free-form meta record (e.g. genesis hash, chain id) written with `batch`."""
        if not name or name in _RESERVED_META:
            raise ValueError(f"meta name {name!r} is empty or reserved")
        batch.put(NS_META + name, value)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> ChainDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


SNAPSHOT_CACHE_ENTRIES = 256  # a snapshot answers a request or a batch, then is dropped


class ChainSnapshot:
    """ChainDB's read side over a store snapshot: one committed height, whole (a commit is
    one batch, so a snapshot holds all of a height or none of it). Its stores are its own,
    so reading it never touches the live state cache, which only the commit path may fill.
    Close it when done."""

    def __init__(self, snapshot: KVSnapshot) -> None:
        self._snapshot = snapshot
        self.blocks = BlockStore(snapshot)
        self.state = StateStore(snapshot, cache_entries=SNAPSHOT_CACHE_ENTRIES)
        self.txs = TxIndex(snapshot)

    def last_committed_height(self) -> int | None:
        return self.blocks.latest_height()

    def state_meta(self) -> StateMeta | None:
        return self.state.meta()

    def get_meta(self, name: bytes) -> bytes | None:
        return self._snapshot.get(NS_META + name)

    def close(self) -> None:
        self._snapshot.close()

    def __enter__(self) -> ChainSnapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

