"""Memoized signature verification.

A vote is seen many times (gossip duplicates, WAL replay, commit certificates, evidence);
it is verified once. Only successes are remembered, keyed by the exact (key, payload,
signature), so the cache can never make a bad signature pass. A node may verify in a
thread pool and call `remember` to hand the engine pre-verified messages.
"""

from __future__ import annotations

from core.keys import verify_raw

# A vote is re-verified within a few heights of its own (gossip duplicates, the next
# block's commit certificate); older entries only cost memory, about 350 bytes each. 200,000
# entries took some 70 MB and, at 4 validators (about 2,000 votes a minute), over an hour
# and a half to reach the bound: RSS grew all that time. 20,000 cover about 10 heights of
# 1,000 validators voting twice a height.
MAX_ENTRIES = 20_000


class SignatureCache:
    __slots__ = ("_ok", "max_entries")

    def __init__(self, max_entries: int = MAX_ENTRIES):
        self._ok: dict[tuple[bytes, bytes, bytes], None] = {}
        self.max_entries = max_entries

    def verify(self, pubkey: bytes, payload: bytes, signature: bytes) -> bool:
        key = (pubkey, payload, signature)
        if key in self._ok:
            return True
        if not verify_raw(pubkey, payload, signature):
            return False
        self.remember(pubkey, payload, signature)
        return True

    def remember(self, pubkey: bytes, payload: bytes, signature: bytes) -> None:
        """Record a signature the caller has verified itself."""
        if len(self._ok) >= self.max_entries:
            self._ok.clear()  # bounded memory; a miss only costs a re-verification
        self._ok[(pubkey, payload, signature)] = None

    def __len__(self) -> int:
        return len(self._ok)


DEFAULT_CACHE = SignatureCache()
