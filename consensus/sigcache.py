"""Memoized signature verification.

A vote is seen many times (gossip duplicates, WAL replay, commit certificates, evidence);
it is verified once. Only successes are remembered, keyed by the exact (key, payload,
signature), so the cache can never make a bad signature pass. A node may verify in a
thread pool and call `remember` to hand the engine pre-verified messages.
"""

from __future__ import annotations

from core.keys import verify_raw

# A vote is re-verified within a few heights of its own (gossip duplicates, the next
# block's commit certificate); older entries only cost memory, about 350 bytes each. Two
# generations of at most half the bound each: the old one is dropped whole when the young
# one is full, so the newest half is always kept (a cache emptied whole when full made the
# next certificate verify every vote again). 8,192 keep at least the last 4,096: two
# heights of 1,000 validators voting twice. (200,000 entries took some 70 MB and, at 4
# validators, over an hour and a half to fill; 20,000 about 8 minutes.)
MAX_ENTRIES = 8_192


class SignatureCache:
    __slots__ = ("_young", "_old", "max_entries")

    def __init__(self, max_entries: int = MAX_ENTRIES):
        if max_entries < 2:
            raise ValueError("a signature cache needs room for at least 2 entries")
        self._young: set[tuple[bytes, bytes, bytes]] = set()
        self._old: set[tuple[bytes, bytes, bytes]] = set()
        self.max_entries = max_entries

    def verify(self, pubkey: bytes, payload: bytes, signature: bytes) -> bool:
        key = (pubkey, payload, signature)
        if key in self._young or key in self._old:
            return True
        if not verify_raw(pubkey, payload, signature):
            return False
        self.remember(pubkey, payload, signature)
        return True

    def remember(self, pubkey: bytes, payload: bytes, signature: bytes) -> None:
        """Record a signature the caller has verified itself."""
        self._young.add((pubkey, payload, signature))
        if len(self._young) >= self.max_entries // 2:
            self._old, self._young = self._young, set()  # bounded; a miss costs a re-check

    def __len__(self) -> int:
        return len(self._young) + len(self._old)


DEFAULT_CACHE = SignatureCache()
