"""ed25519 keys and domain-separated signatures.

Every signature covers `chainmerce/<domain> NUL <chain_id> NUL <message>`, so a signature
made for one purpose (a tx, a vote, a handshake) or one chain is useless for any other.
"""

from __future__ import annotations

import re

import nacl.bindings
import nacl.exceptions

from core.errors import SignatureError

PUBKEY_SIZE = 32
SIGNATURE_SIZE = 64
SEED_SIZE = 32

# Domain tags: one per kind of signed object. Never reuse one for a new purpose.
DOMAIN_TX = b"tx"
DOMAIN_PROPOSAL = b"proposal"
DOMAIN_VOTE = b"vote"
DOMAIN_HANDSHAKE = b"handshake"
DOMAIN_EVIDENCE = b"evidence"

_CHAIN_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,47}$")


def validate_chain_id(chain_id: str) -> str:
    """Chain ids are short lowercase ASCII names: they go into every signed payload."""
    if not isinstance(chain_id, str) or not _CHAIN_ID_RE.match(chain_id):
        raise ValueError(
            "chain id must be 1-48 characters of a-z, 0-9, '.', '_' or '-', starting alphanumeric"
        )
    return chain_id


def signing_payload(domain: bytes, chain_id: str, message: bytes) -> bytes:
    return b"chainmerce/" + domain + b"\x00" + chain_id.encode("ascii") + b"\x00" + message


class PrivateKey:
    """An ed25519 signing key, made from a 32-byte seed."""

    __slots__ = ("_seed", "_secret", "public_key")

    def __init__(self, seed: bytes):
        if not isinstance(seed, bytes) or len(seed) != SEED_SIZE:
            raise ValueError("an ed25519 seed is 32 bytes")
        self._seed = seed
        public, self._secret = nacl.bindings.crypto_sign_seed_keypair(seed)
        self.public_key = public

    @classmethod
    def generate(cls) -> PrivateKey:
        import os  # key generation is the only place core touches the OS

        return cls(os.urandom(SEED_SIZE))

    @property
    def seed(self) -> bytes:
        return self._seed

    def sign_raw(self, payload: bytes) -> bytes:
        return nacl.bindings.crypto_sign(payload, self._secret)[:SIGNATURE_SIZE]

    def sign(self, domain: bytes, chain_id: str, message: bytes) -> bytes:
        return self.sign_raw(signing_payload(domain, chain_id, message))

    def __repr__(self) -> str:  # never print the seed
        return f"PrivateKey(public={self.public_key.hex()})"


def verify_raw(public_key: bytes, payload: bytes, signature: bytes) -> bool:
    if len(public_key) != PUBKEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        nacl.bindings.crypto_sign_open(signature + payload, public_key)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError):
        return False
    return True


def verify(public_key: bytes, domain: bytes, chain_id: str, message: bytes, signature: bytes) -> bool:
    """True when `signature` is `public_key`'s signature of `message` for this domain and chain."""
    if not isinstance(public_key, bytes) or not isinstance(signature, bytes):
        return False
    return verify_raw(public_key, signing_payload(domain, chain_id, message), signature)


def require_valid(public_key: bytes, domain: bytes, chain_id: str, message: bytes, signature: bytes) -> None:
    if not verify(public_key, domain, chain_id, message, signature):
        raise SignatureError("signature does not verify")
