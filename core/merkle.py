"""Merkle trees in the style of RFC 6962 (Certificate Transparency).

Leaves are hashed with a 0x00 prefix and inner nodes with 0x01, so a leaf can never be
passed off as an inner node. The tree over n leaves splits at the largest power of two
below n, which makes proofs for any n well defined without padding.
"""

from __future__ import annotations

from core.hashing import sha256

EMPTY_ROOT = sha256(b"")


def leaf_hash(data: bytes) -> bytes:
    return sha256(b"\x00" + data)


def inner_hash(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right)


def _split(n: int) -> int:
    k = 1
    while k << 1 < n:
        k <<= 1
    return k


def _root_of_hashes(hashes: list[bytes]) -> bytes:
    # Bottom-up pairing; an odd node is carried up unchanged, which yields exactly the
    # RFC 6962 shape (left subtree = largest power of two) for every n.
    level = hashes
    while len(level) > 1:
        nxt = [inner_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def merkle_root(leaves: list[bytes]) -> bytes:
    if not leaves:
        return EMPTY_ROOT
    return _root_of_hashes([leaf_hash(leaf) for leaf in leaves])


def merkle_root_of_leaf_hashes(hashes: list[bytes]) -> bytes:
    return _root_of_hashes(hashes) if hashes else EMPTY_ROOT


def inclusion_proof(leaves: list[bytes], index: int) -> list[bytes]:
    """Audit path for leaf `index`, from the leaf's sibling up to the root's child."""
    if not 0 <= index < len(leaves):
        raise IndexError("leaf index out of range")
    return _path([leaf_hash(leaf) for leaf in leaves], index)


def _path(hashes: list[bytes], index: int) -> list[bytes]:
    if len(hashes) == 1:
        return []
    k = _split(len(hashes))
    if index < k:
        return _path(hashes[:k], index) + [_root_of_hashes(hashes[k:])]
    return _path(hashes[k:], index - k) + [_root_of_hashes(hashes[:k])]


def verify_inclusion(leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes) -> bool:
    """RFC 9162 section 2.1.3.2: recompute the root from the leaf and its audit path."""
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    node = leaf_hash(leaf)
    for sibling in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            node = inner_hash(sibling, node)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            node = inner_hash(node, sibling)
        fn >>= 1
        sn >>= 1
    return sn == 0 and node == root
