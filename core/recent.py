"""A bounded set of recently added keys: a relay's seen-cache, a pool's recently committed
hashes, what a peer is known to have.

Two generations of at most `capacity // 2` keys each: new keys go into the young one;
when it is full it becomes the old one and the old one is dropped whole. So at most
`capacity` keys are held and the last `capacity // 2` added are always among them. Two
plain sets cost 42-64 bytes a key beside the key itself at the node's sizes, where an
insertion-ordered dict that evicts one key at a time cost 105-179 (CPython 3.11,
tracemalloc): these sets hold hundreds of thousands of tx hashes in a node.
"""

from __future__ import annotations

from collections.abc import Hashable


class RecentSet:
    __slots__ = ("_young", "_old", "_generation", "capacity")

    def __init__(self, capacity: int):
        if capacity < 2:
            raise ValueError("a recent-set needs a capacity of at least 2")
        self.capacity = capacity
        self._generation = capacity // 2
        self._young: set[Hashable] = set()
        self._old: set[Hashable] = set()

    def add(self, key: Hashable) -> bool:
        """Remember `key`; False if it was already remembered."""
        if key in self._young or key in self._old:
            return False
        self._young.add(key)
        if len(self._young) >= self._generation:
            self._old, self._young = self._young, set()
        return True

    def __contains__(self, key: Hashable) -> bool:
        return key in self._young or key in self._old

    def __len__(self) -> int:
        return len(self._young) + len(self._old)

    def clear(self) -> None:
        self._young, self._old = set(), set()
