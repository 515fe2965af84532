"""Double-sign protection.

The guard remembers the last (height, round, step) it signed and the exact bytes. It signs
only strictly later steps; for the same step it returns the stored signature when the
message is the same one (a timestamp difference is tolerated by reusing the stored vote),
and refuses anything else. The engine emits PersistSigningState before the Broadcast of
every newly signed message; the driver fsyncs it before the message leaves the process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from consensus.errors import ConsensusError, SigningRefused
from consensus.messages import Step
from core.encoding import decode, encode
from core.errors import DecodeError
from core.keys import DOMAIN_PROPOSAL, DOMAIN_VOTE, PrivateKey

_TIMESTAMP_FIELD = 4  # position of the timestamp in vote and proposal sign bytes


@dataclass(frozen=True, slots=True)
class SigningState:
    height: int = 0
    round: int = -1
    step: int = 0
    sign_bytes: bytes = b""
    signature: bytes = b""

    def hrs(self) -> tuple[int, int, int]:
        return (self.height, self.round, self.step)

    def encode(self) -> bytes:
        return encode([self.height, self.round, self.step, self.sign_bytes, self.signature])

    @classmethod
    def decode(cls, data: bytes) -> SigningState:
        try:
            f: Any = decode(data)
        except DecodeError as exc:
            raise ConsensusError(f"bad signing state: {exc}") from None
        if (not isinstance(f, list) or len(f) != 5
                or not all(isinstance(x, int) and not isinstance(x, bool) for x in f[:3])
                or not all(isinstance(x, bytes) for x in f[3:])):
            raise ConsensusError("bad signing state: expected [height, round, step, bytes, sig]")
        return cls(*f)


def _same_but_timestamp(a: bytes, b: bytes) -> bool:
    try:
        fa, fb = decode(a), decode(b)
    except DecodeError:
        return False
    if not (isinstance(fa, list) and isinstance(fb, list) and len(fa) == len(fb) > 4):
        return False
    return fa[:_TIMESTAMP_FIELD] + fa[_TIMESTAMP_FIELD + 1:] == (
        fb[:_TIMESTAMP_FIELD] + fb[_TIMESTAMP_FIELD + 1:])


class SigningGuard:
    """Signs consensus messages for one validator key, never two conflicting ones."""

    __slots__ = ("_key", "chain_id", "state")

    def __init__(self, key: PrivateKey, chain_id: str, state: SigningState | None = None):
        self._key = key
        self.chain_id = chain_id
        self.state = state or SigningState()

    @property
    def public_key(self) -> bytes:
        return self._key.public_key

    def sign(self, height: int, round_: int, step: Step,
             sign_bytes: bytes) -> tuple[bytes, bytes, SigningState | None]:
        """Return (sign_bytes actually signed, signature, new state to persist or None)."""
        hrs = (height, round_, int(step))
        last = self.state.hrs()
        if hrs < last:
            raise SigningRefused(f"already signed {last}, refusing {hrs}")
        if hrs == last:
            if sign_bytes == self.state.sign_bytes or _same_but_timestamp(
                    sign_bytes, self.state.sign_bytes):
                return self.state.sign_bytes, self.state.signature, None
            raise SigningRefused(f"a different message was already signed at {hrs}")
        domain = DOMAIN_PROPOSAL if step == Step.PROPOSE else DOMAIN_VOTE
        signature = self._key.sign(domain, self.chain_id, sign_bytes)
        self.state = SigningState(height, round_, int(step), sign_bytes, signature)
        return sign_bytes, signature, self.state
