"""The commerce VM's state as stored: a read view plus change application into a batch.

The VM reads committed state through `get` / `iterate` (the same duck type as a KVStore,
restricted to the state namespace) and hands back a list of changes after each block;
`apply` puts them into the commit's batch together with the (height, app hash) the state
is at, so the state and its meta record can never disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from storage.blocks import check_height
from storage.errors import StoreCorruptionError
from storage.kv import KVPair, KVReader, WriteBatch
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

    The cache has two generations of at most half the bound each: new entries go into the
    young one; when it is full it becomes the old one and the old one is dropped whole, and
    a read that hits the old generation moves the entry back to the young one. Evicting one
    entry at a time from the front of a dict instead leaves a run of deleted slots that
    every later scan from the front walks again (34 ms per block at 100,000 entries).
    """

    __slots__ = ("_store", "_get", "_young", "_old", "_generation")

    def __init__(self, store: KVReader, cache_entries: int = STATE_CACHE_ENTRIES) -> None:
        self._store = store
        self._get = store.get
        self._young: dict[bytes, bytes | None] = {}
        self._old: dict[bytes, bytes | None] = {}
        self._generation = max(1, cache_entries // 2)

    def get(self, key: bytes) -> bytes | None:
        young = self._young
        if key in young:
            return young[key]
        old = self._old
        value = old[key] if key in old else self._get(NS_STATE + key)
        young[key] = value
        if len(young) >= self._generation:
            self._rotate()
        return value

    def remember(self, changes: Iterable[StateChange]) -> None:
        """`changes` are now in the store: keep the cache equal to it (and keep them, the
        next block is likely to read what this one wrote)."""
        # A stale copy in the old generation is harmless: reads look in the young one
        # first, and the old one is dropped whole at the next turn.
        generation = self._generation
        for key, value in changes:
            young = self._young
            young[key] = value
            if len(young) >= generation:
                self._rotate()

    def _rotate(self) -> None:
        self._old = self._young
        self._young = {}

    @property
    def cached_entries(self) -> int:
        return len(self._young) + len(self._old)

    def forget(self) -> None:
        self._young.clear()
        self._old.clear()

    def iterate(
        self, prefix: bytes, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[KVPair]:
        full_start = None if start is None else NS_STATE + start
        inner = self._store.iterate(NS_STATE + prefix, full_start, reverse)
        return ((key[1:], value) for key, value in inner)

    def apply(self, batch: WriteBatch, changes: Iterable[StateChange]) -> None:
        """Put every change into `batch` (a None value deletes). A block writes thousands of
        keys, so they go in as one extend: the changes are the VM's own (key, value) pairs,
        which are the batch's (key, value or None) ops once the namespace is prefixed."""
        batch.ops.extend([(NS_STATE + key, value) for key, value in changes])

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
