"""State access: the small reader interface, a sorted in-memory store, and the overlay.

StateReader is all the VM needs from storage; storage/ implements the same duck type on
LevelDB. Execution never mutates the reader: it writes into an Overlay whose `changes()` the
node commits atomically.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable, Iterator
from typing import Protocol


class StateReader(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def iterate(
        self, prefix: bytes, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) for keys starting with `prefix`, ascending (descending if reverse),
        beginning at `start` (inclusive, a full key) when given."""
        ...


Change = tuple[bytes, bytes | None]  # value None = delete


class MemoryState:
    """A sorted in-memory StateReader: a dict plus a bisect-maintained sorted key list."""

    def __init__(self, items: Iterable[tuple[bytes, bytes]] = ()):
        self._data: dict[bytes, bytes] = dict(items)
        self._keys: list[bytes] = sorted(self._data)

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def iterate(
        self, prefix: bytes, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        keys = self._keys
        lo = bisect_left(keys, prefix)
        hi = _prefix_end(keys, prefix)
        if start is not None:
            if reverse:
                hi = min(hi, bisect_right(keys, start))
            else:
                lo = max(lo, bisect_left(keys, start))
        selected = keys[lo:hi]  # a snapshot: applying changes while iterating is safe
        if reverse:
            selected.reverse()
        data = self._data
        for key in selected:
            yield key, data[key]

    def apply(self, changes: Iterable[Change]) -> None:
        data, keys = self._data, self._keys
        for key, value in changes:
            if value is None:
                if key in data:
                    del data[key]
                    del keys[bisect_left(keys, key)]
            else:
                if key not in data:
                    insort(keys, key)
                data[key] = value

    def copy(self) -> MemoryState:
        clone = MemoryState()
        clone._data = dict(self._data)
        clone._keys = list(self._keys)
        return clone

    def items(self) -> list[tuple[bytes, bytes]]:
        return [(k, self._data[k]) for k in self._keys]

    def __len__(self) -> int:
        return len(self._data)


def _prefix_end(keys: list[bytes], prefix: bytes) -> int:
    stripped = prefix.rstrip(b"\xff")
    if not stripped:  # b"" or all 0xff: every key from the prefix on matches
        return len(keys)
    # the smallest key greater than every key starting with prefix
    return bisect_left(keys, stripped[:-1] + bytes([stripped[-1] + 1]))


class Overlay:
    """Copy-on-write view over a reader: reads fall through, writes stay here.

    Overlays nest (a tx runs in a child of the block overlay) so a failing tx is discarded
    by dropping its child, and a succeeding one is folded in with `commit_into_parent`.
    """

    __slots__ = ("base", "writes")

    def __init__(self, base: StateReader):
        self.base = base
        self.writes: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        writes = self.writes
        if key in writes:
            return writes[key]
        return self.base.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self.writes[key] = value

    def delete(self, key: bytes) -> None:
        self.writes[key] = None

    def iterate(
        self, prefix: bytes, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        local = sorted(
            (k for k in self.writes if k.startswith(prefix)
             and (start is None or (k <= start if reverse else k >= start))),
            reverse=reverse,
        )
        base_iter = self.base.iterate(prefix, start, reverse)
        writes = self.writes
        i = 0
        for key, value in base_iter:
            while i < len(local) and (local[i] > key if reverse else local[i] < key):
                override = writes[local[i]]
                if override is not None:
                    yield local[i], override
                i += 1
            if i < len(local) and local[i] == key:
                override = writes[key]
                i += 1
                if override is not None:
                    yield key, override
                continue
            yield key, value
        while i < len(local):
            override = writes[local[i]]
            if override is not None:
                yield local[i], override
            i += 1

    def commit_into_parent(self) -> None:
        parent = self.base
        assert isinstance(parent, Overlay), "only a nested overlay folds into its parent"
        parent.writes.update(self.writes)

    def changes(self) -> list[Change]:
        """Every write, sorted by key (what the node commits)."""
        return sorted(self.writes.items())
