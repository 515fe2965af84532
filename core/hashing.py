"""SHA-256 is the one hash function of chainmerce."""

from __future__ import annotations

import hashlib

HASH_SIZE = 32


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def tagged_hash(tag: bytes, data: bytes) -> bytes:
    """Hash with a domain prefix so hashes of different kinds of object never collide."""
    return hashlib.sha256(tag + b"\x00" + data).digest()
