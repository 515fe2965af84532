"""The commerce VM's state as stored: a read view plus change application into a batch.

The VM reads committed state through `get` / `iterate` (the same duck type as a KVStore,
restricted to the state namespace) and hands back a list of changes after each block;
`apply` puts them into the commit's batch together with the (height, app hash) the state
is at, so the state and its meta record can never disagree.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from storage.blocks import check_height
from storage.errors import StoreCorruptionError
from storage.kv import KVPair, KVStore, WriteBatch
from storage.layout import META_STATE, NS_META, NS_STATE, read_u64, u64

StateChange = tuple[bytes, bytes | None]  # (key, new value or None to delete)


@dataclass(frozen=True, slots=True)
class StateMeta:
    height: int
    app_hash: bytes


STATE_CACHE_ENTRIES = 100_000


class StateStore:
    """Committed VM state. Never sees a batch until it is written.

    Point reads go through a bounded cache of committed values (absent keys included):
    every block reads its senders' accounts twice (mempool check, execution) and the app
    hash's buckets and nodes once more, and a LevelDB read costs far more than a dict's.
    The cache only ever holds what the store holds: ChainDB folds a block's changes in
    after its batch is written (`remember`), never before.
    """

    __slots__ = ("_store", "_get", "_cache", "_cache_entries")

    def __init__(self, store: KVStore, cache_entries: int = STATE_CACHE_ENTRIES) -> None:
        self._store = store
        self._get = store.get
        self._cache: dict[bytes, bytes | None] = {}
        self._cache_entries = cache_entries

    def get(self, key: bytes) -> bytes | None:
        cache = self._cache
        if key in cache:
            return cache[key]
        value = cache[key] = self._get(NS_STATE + key)
        if len(cache) > self._cache_entries:
            self._trim()
        return value

    def remember(self, changes: Iterable[StateChange]) -> None:
        """`changes` are now in the store: keep the cache equal to it (and keep them, the
        next block is likely to read what this one wrote)."""
        cache = self._cache
        for key, value in changes:
            cache[key] = value
        if len(cache) > self._cache_entries:
            self._trim()

    def _trim(self) -> None:
        """Drop the oldest entries beyond the bound (insertion order: cheap, good enough)."""
        cache = self._cache
        for key in list(itertools.islice(cache, len(cache) - self._cache_entries)):
            del cache[key]

    def forget(self) -> None:
        self._cache.clear()

    def iterate(
        self, prefix: bytes, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[KVPair]:
        full_start = None if start is None else NS_STATE + start
        inner = self._store.iterate(NS_STATE + prefix, full_start, reverse)
        return ((key[1:], value) for key, value in inner)

    def apply(self, batch: WriteBatch, changes: Iterable[StateChange]) -> None:
        put, delete = batch.put, batch.delete
        for key, value in changes:
            if value is None:
                delete(NS_STATE + key)
            else:
                put(NS_STATE + key, value)

    def put_meta(self, batch: WriteBatch, height: int, app_hash: bytes) -> None:
        if type(app_hash) is not bytes:
            raise ValueError("app hash must be bytes")
        batch.put(NS_META + META_STATE, u64(check_height(height)) + app_hash)

    def meta(self) -> StateMeta | None:
        raw = self._get(NS_META + META_STATE)
        if raw is None:
            return None
        if len(raw) < 8:
            raise StoreCorruptionError("state meta record is shorter than 8 bytes")
        return StateMeta(read_u64(raw), raw[8:])
