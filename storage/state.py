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
STATE_CACHE_BYTES = 32 * 1024 * 1024
# Python's own cost of a cached entry beyond its key and value bytes: two bytes objects'
# headers and the dict slot (measured with tracemalloc: about 118 bytes on CPython 3.11)
ENTRY_OVERHEAD = 118
_MISSING = object()


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

    Keys under `uncached_prefixes` are never cached: the VM keeps its own copy of them
    (the app hash's inner nodes, which it would otherwise write into the cache at every
    block, pushing out the buckets and values it does read).

    The bound is in entries and in bytes (keys, values and ENTRY_OVERHEAD each), whichever
    is reached first. Entries alone do not bound memory: the app hash's buckets grow with
    the state (64 bytes per key; 902 bytes each on average after a 20-minute benchmark
    run), so 100,000 entries hold more bytes the longer the chain runs.
    """

    __slots__ = ("_store", "_get", "_young", "_old", "_generation", "_generation_bytes",
                 "_young_bytes", "_uncached")

    def __init__(self, store: KVReader, cache_entries: int = STATE_CACHE_ENTRIES,
                 cache_bytes: int = STATE_CACHE_BYTES,
                 uncached_prefixes: tuple[bytes, ...] = ()) -> None:
        self._store = store
        self._uncached = uncached_prefixes
        self._get = store.get
        self._young: dict[bytes, bytes | None] = {}
        self._old: dict[bytes, bytes | None] = {}
        self._generation = max(1, cache_entries // 2)
        self._generation_bytes = max(1, cache_bytes // 2)
        self._young_bytes = 0

    def get(self, key: bytes) -> bytes | None:
        young = self._young
        if key in young:
            return young[key]
        old = self._old
        value = old[key] if key in old else self._get(NS_STATE + key)
        if key.startswith(self._uncached):
            return value
        young[key] = value
        self._young_bytes += len(key) + (len(value) if value else 0) + ENTRY_OVERHEAD
        if len(young) >= self._generation or self._young_bytes >= self._generation_bytes:
            self._rotate()
        return value

    def remember(self, changes: Iterable[StateChange]) -> None:
        """`changes` are now in the store: keep the cache equal to it (and keep them, the
        next block is likely to read what this one wrote)."""
        # A stale copy in the old generation is harmless: reads look in the young one
        # first, and the old one is dropped whole at the next turn.
        generation, generation_bytes = self._generation, self._generation_bytes
        young, size, uncached = self._young, self._young_bytes, self._uncached
        for key, value in changes:
            if key.startswith(uncached):
                continue
            before = young.get(key, _MISSING)
            if before is _MISSING:
                size += len(key) + ENTRY_OVERHEAD
            elif before:
                size -= len(before)  # type: ignore[arg-type]
            young[key] = value
            if value:
                size += len(value)
            if len(young) >= generation or size >= generation_bytes:
                self._rotate()
                young, size = self._young, 0
        self._young_bytes = size

    def _rotate(self) -> None:
        self._old = self._young
        self._young = {}
        self._young_bytes = 0

    @property
    def cached_bytes(self) -> int:
        """What the young generation counts against the bound (the old one holds at most
        as much)."""
        return self._young_bytes

    @property
    def cached_entries(self) -> int:
        return len(self._young) + len(self._old)

    def forget(self) -> None:
        self._young.clear()
        self._old.clear()
        self._young_bytes = 0

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
