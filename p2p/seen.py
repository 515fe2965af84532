"""A bounded seen-cache: remembers the most recent keys so a relayed message never echoes."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable


class SeenCache:
    """An insertion-ordered set that forgets its oldest members beyond `capacity`.

    `add(key)` is the one call a relay needs: True the first time a key is seen (relay
    it), False afterwards (drop it). Memory is bounded by `capacity` keys.
    """

    __slots__ = ("_items", "capacity")

    def __init__(self, capacity: int):
        if capacity <= 0:
            raise ValueError("a seen-cache needs a positive capacity")
        self._items: OrderedDict[Hashable, None] = OrderedDict()
        self.capacity = capacity

    def add(self, key: Hashable) -> bool:
        """Remember `key`; False if it was already remembered."""
        if key in self._items:
            return False
        self._items[key] = None
        if len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return True

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        self._items.clear()
