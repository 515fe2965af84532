"""Memoized signature verification.

A vote is seen many times (gossip duplicates, WAL replay, commit certificates, evidence);
it is verified once. Only successes are remembered, keyed by the exact (key, payload,
signature), so the cache can never make a bad signature pass. A node may verify in a
thread pool and call `remember` to hand the engine pre-verified messages.
"""

from __future__ import annotations

from core.keys import verify_raw


class SignatureCache:
    __slots__ = ("_ok", "max_entries")

    def __init__(self, max_entries: int = 200_000):
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
