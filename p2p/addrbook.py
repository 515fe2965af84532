"""A bounded in-memory address book of dialable peers, fed by config, PEX and connections."""

from __future__ import annotations

import random
from dataclasses import dataclass

MAX_DIAL_FAILURES = 3  # a non-persistent address that fails this often in a row is dropped
RETRY_BASE = 1.0
RETRY_MAX = 60.0


@dataclass(slots=True)
class BookEntry:
    peer_id: bytes
    host: str
    port: int
    good: bool = False  # we completed a handshake with it at this address
    failures: int = 0
    next_attempt: float = 0.0


class AddressBook:
    def __init__(self, capacity: int, own_id: bytes):
        self.capacity = capacity
        self.own_id = own_id
        self._entries: dict[bytes, BookEntry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, peer_id: bytes) -> bool:
        return peer_id in self._entries

    def get(self, peer_id: bytes) -> BookEntry | None:
        return self._entries.get(peer_id)

    def add(self, peer_id: bytes, host: str, port: int) -> bool:
        """Learn an address; False if it is ours, already known, or the book is full."""
        if peer_id == self.own_id or peer_id in self._entries or port <= 0:
            return False
        if len(self._entries) >= self.capacity and not self._evict():
            return False
        self._entries[peer_id] = BookEntry(peer_id, host, port)
        return True

    def _evict(self) -> bool:
        """Make room by forgetting an address we never reached (most failures first)."""
        untested = [e for e in self._entries.values() if not e.good]
        if not untested:
            return False
        victim = max(untested, key=lambda e: e.failures)
        del self._entries[victim.peer_id]
        return True

    def mark_good(self, peer_id: bytes, host: str, port: int) -> None:
        if peer_id == self.own_id or port <= 0:
            return
        entry = self._entries.get(peer_id)
        if entry is None:
            if len(self._entries) >= self.capacity and not self._evict():
                return
            entry = self._entries[peer_id] = BookEntry(peer_id, host, port)
        entry.host, entry.port, entry.good, entry.failures = host, port, True, 0

    def mark_failed(self, peer_id: bytes, now: float) -> None:
        entry = self._entries.get(peer_id)
        if entry is None:
            return
        entry.failures += 1
        if entry.failures >= MAX_DIAL_FAILURES:
            del self._entries[peer_id]
            return
        entry.next_attempt = now + min(RETRY_MAX, RETRY_BASE * 2**entry.failures)

    def remove(self, peer_id: bytes) -> None:
        self._entries.pop(peer_id, None)

    def candidates(self, now: float, exclude: set[bytes]) -> list[BookEntry]:
        """Addresses worth dialling now, in random order."""
        found = [e for e in self._entries.values()
                 if e.next_attempt <= now and e.peer_id not in exclude]
        random.shuffle(found)
        return found

    def sample(self, n: int, exclude: set[bytes]) -> list[BookEntry]:
        """Up to n addresses to share, known-good ones first."""
        good = [e for e in self._entries.values() if e.good and e.peer_id not in exclude]
        other = [e for e in self._entries.values() if not e.good and e.peer_id not in exclude]
        random.shuffle(good)
        random.shuffle(other)
        return (good + other)[:n]
