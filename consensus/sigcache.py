"""Memoized signature verification.

A vote is seen many times (gossip duplicates, WAL replay, commit certificates, evidence);
it is verified once. Only successes are remembered, keyed by the exact (key, payload,
signature), so the cache can never make a bad signature pass. A node may verify in a
thread pool and call `remember` to hand the engine pre-verified messages.
"""

from __future__ import annotations

from core.keys import verify_raw
from core.recent import RecentSet

# A vote is re-verified within a few heights of its own (gossip duplicates, the next
# block's commit certificate); older entries only cost memory, about 350 bytes each. A
# RecentSet (core.recent) always keeps the newest half of its bound: a cache emptied whole
# when full made the next certificate verify every vote again. 8,192 keep at least the
# last 4,096, two heights of 1,000 validators voting twice. (200,000 entries took some 70 MB and, at 4
# validators, over an hour and a half to fill; 20,000 about 8 minutes.)
MAX_ENTRIES = 8_192


class SignatureCache:
    __slots__ = ("_ok", "max_entries")

    def __init__(self, max_entries: int = MAX_ENTRIES):
        self._ok = RecentSet(max_entries)  # a miss after the turn costs a re-check
        self.max_entries = max_entries

    def verify(self, pubkey: bytes, payload: bytes, signature: bytes) -> bool:
        key = (pubkey, payload, signature)
        if key in self._ok:
            return True
        if not verify_raw(pubkey, payload, signature):
            return False
        self._ok.add(key)
        return True

    def remember(self, pubkey: bytes, payload: bytes, signature: bytes) -> None:
        """Record a signature the caller has verified itself."""
        self._ok.add((pubkey, payload, signature))

    def __len__(self) -> int:
        return len(self._ok)


DEFAULT_CACHE = SignatureCache()
