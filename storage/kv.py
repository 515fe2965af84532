"""The bytes -> bytes key-value interface every store is built on, plus the memory backend.

The interface is deliberately small (py-evm style): point reads, ordered range scans over a
prefix, and one atomic write of a whole batch. Everything a commit changes goes into one
`WriteBatch`, so a crash leaves either all of it or none of it (see docs/storage.md).

Iteration order is bytewise ascending on keys (descending with `reverse=True`), exactly
LevelDB's default comparator, so both backends agree on every scan.
"""

from __future__ import annotations

import bisect
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Protocol

from storage.errors import StorageError

KVPair = tuple[bytes, bytes]


class WriteBatch:
    """An ordered list of puts and deletes, applied atomically by `KVStore.write`.

    Operations apply in the order they were added, so a later op on the same key wins.
    A batch is not readable: stores never see it until it is written.
    """

    __slots__ = ("ops",)

    def __init__(self) -> None:
        self.ops: list[tuple[bytes, bytes | None]] = []

    def put(self, key: bytes, value: bytes) -> None:
        if type(key) is not bytes or type(value) is not bytes:
            raise TypeError("WriteBatch.put takes bytes key and bytes value")
        self.ops.append((key, value))

    def delete(self, key: bytes) -> None:
        if type(key) is not bytes:
            raise TypeError("WriteBatch.delete takes a bytes key")
        self.ops.append((key, None))

    def __len__(self) -> int:
        return len(self.ops)

    def clear(self) -> None:
        self.ops.clear()


class KVReader(Protocol):
    """The read half of a KVStore: what a snapshot offers."""

    def get(self, key: bytes) -> bytes | None: ...

    def iterate(
        self, prefix: bytes, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[KVPair]: ...


class KVSnapshot(ABC):
    """The store as it was when `KVStore.snapshot` was called: later writes are not seen,
    so several reads agree with each other. Safe to read on another thread while the
    store's owner writes. `close` releases it (idempotent)."""

    @abstractmethod
    def get(self, key: bytes) -> bytes | None: ...

    @abstractmethod
    def iterate(
        self, prefix: bytes, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[KVPair]: ...

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> KVSnapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class KVStore(ABC):
    """A sorted bytes -> bytes map with atomic batch writes."""

    @abstractmethod
    def get(self, key: bytes) -> bytes | None:
        """The value stored under `key`, or None."""

    @abstractmethod
    def iterate(
        self, prefix: bytes, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[KVPair]:
        """(key, value) pairs whose key starts with `prefix`, in key order.

        `start` is an inclusive bound given as a full key: ascending scans begin at the
        first key >= start, descending scans at the last key <= start. The scan sees the
        store as it was when `iterate` was called (later writes are not visible).
        """

    @abstractmethod
    def write(self, batch: WriteBatch, sync: bool = False) -> None:
        """Apply every op of `batch` atomically. `sync=True` makes it durable on return."""

    @abstractmethod
    def close(self) -> None:
        """Release the store. Idempotent."""

    @abstractmethod
    def snapshot(self) -> KVSnapshot:
        """A point-in-time read view. Every batch is either entirely in it or not at all,
        and it may be read on any thread (the RPC thread reads committed state this way
        while the node's loop writes the next block)."""

    def __enter__(self) -> KVStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def prefix_upper_bound(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with `prefix` (None: no bound)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


def scan_range(
    prefix: bytes, start: bytes | None, reverse: bool
) -> tuple[bytes, bytes | None, bool] | None:
    """Turn (prefix, start, reverse) into a key range [lo, hi) or [lo, hi].

    Returns (lo, hi, hi_inclusive), hi None meaning unbounded, or None when the range is
    empty. Shared by both backends so they cannot disagree on edge cases.
    """
    lo: bytes = prefix
    hi = prefix_upper_bound(prefix)
    hi_inclusive = False
    if start is not None:
        if not reverse:
            if start > lo:
                lo = start
        elif hi is None or start < hi:
            hi, hi_inclusive = start, True
    if hi is not None and (lo > hi or (lo == hi and not hi_inclusive)):
        return None
    return lo, hi, hi_inclusive


class MemoryStore(KVStore):
    """A sorted in-memory store for tests and throwaway nodes.

    Keys are kept in a sorted list next to a dict, so `get` is a dict lookup and a scan is
    a bisect plus a slice. A scan copies its range when it starts, which gives the same
    snapshot semantics as a LevelDB iterator. A snapshot is a copy of the whole store,
    shared by every snapshot taken before the next write (a lock keeps a copy from seeing
    half a batch); fine for the small stores of tests, not for a real chain.
    """

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}
        self._keys: list[bytes] = []
        self._closed = False
        self._lock = threading.Lock()
        self._copy: MemoryStore | None = None  # the current snapshot, until the next write

    def get(self, key: bytes) -> bytes | None:
        if self._closed:
            raise StorageError("store is closed")
        return self._data.get(key)

    def iterate(
        self, prefix: bytes, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[KVPair]:
        if self._closed:
            raise StorageError("store is closed")
        bounds = scan_range(prefix, start, reverse)
        if bounds is None:
            return iter(())
        lo, hi, hi_inclusive = bounds
        keys = self._keys
        i = bisect.bisect_left(keys, lo)
        if hi is None:
            j = len(keys)
        elif hi_inclusive:
            j = bisect.bisect_right(keys, hi)
        else:
            j = bisect.bisect_left(keys, hi)
        data = self._data
        pairs = [(k, data[k]) for k in keys[i:j]]
        if reverse:
            pairs.reverse()
        return iter(pairs)

    def write(self, batch: WriteBatch, sync: bool = False) -> None:
        if self._closed:
            raise StorageError("store is closed")
        with self._lock:
            self._copy = None
            self._apply(batch)

    def _apply(self, batch: WriteBatch) -> None:
        data, keys = self._data, self._keys
        for key, value in batch.ops:
            if value is None:
                if key in data:
                    del data[key]
                    del keys[bisect.bisect_left(keys, key)]
            else:
                if key not in data:
                    bisect.insort(keys, key)
                data[key] = value

    def snapshot(self) -> KVSnapshot:
        if self._closed:
            raise StorageError("store is closed")
        with self._lock:
            if self._copy is None:
                copy = MemoryStore()
                copy._data, copy._keys = dict(self._data), list(self._keys)
                self._copy = copy
            return _MemorySnapshot(self._copy)

    def close(self) -> None:
        self._closed = True

    def __len__(self) -> int:
        return len(self._data)


class _MemorySnapshot(KVSnapshot):
    """A read-only handle on a frozen MemoryStore copy (never written again)."""

    __slots__ = ("_frozen",)

    def __init__(self, frozen: MemoryStore) -> None:
        self._frozen = frozen

    def get(self, key: bytes) -> bytes | None:
        return self._frozen._data.get(key)

    def iterate(
        self, prefix: bytes, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[KVPair]:
        return self._frozen.iterate(prefix, start, reverse)

    def close(self) -> None:
        pass  # a copy: nothing to release


class PrefixedView:
    """One namespace of a store: keys go in and come out without the prefix.

    Reads have the KVStore read interface (`get`, `iterate`); writes go into a caller's
    batch with the prefix added, so a namespace never writes on its own and every change
    joins the caller's atomic commit.
    """

    __slots__ = ("store", "prefix")

    def __init__(self, store: KVStore | PrefixedView, prefix: bytes) -> None:
        if not prefix:
            raise ValueError("a PrefixedView needs a non-empty prefix")
        # Collapse nested views so a read is always one call into the real store.
        if isinstance(store, PrefixedView):
            store, prefix = store.store, store.prefix + prefix
        self.store: KVStore = store
        self.prefix = prefix

    def get(self, key: bytes) -> bytes | None:
        return self.store.get(self.prefix + key)

    def iterate(
        self, prefix: bytes = b"", start: bytes | None = None, reverse: bool = False
    ) -> Iterator[KVPair]:
        full_start = None if start is None else self.prefix + start
        cut = len(self.prefix)
        inner = self.store.iterate(self.prefix + prefix, full_start, reverse)
        return ((key[cut:], value) for key, value in inner)

    def put(self, batch: WriteBatch, key: bytes, value: bytes) -> None:
        batch.put(self.prefix + key, value)

    def delete(self, batch: WriteBatch, key: bytes) -> None:
        batch.delete(self.prefix + key)
