"""Incremental app hash over the state (see proof.py for the tree's shape).

The tree lives in the state itself under the reserved prefix `~`, which the commitment
excludes: `~b<bucket:2>` holds a bucket's sorted (key_hash, value_hash) pairs, `~n<level:1>
<index:2>` an inner node's 16 child hashes. Empty buckets and default nodes are not stored.
A block rehashes only the buckets it touched and their paths to the root.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Iterable

from .proof import (
    _KEY_TAG,
    _NODE_TAG,
    _VALUE_TAG,
    DEFAULT_NODE,
    DEPTH,
    FANOUT,
    HASH,
    NODE_SIZE,
    PAIR,
    bucket_hash,
    bucket_index,
    key_hash,
    node_hash,
)
from .state import Overlay, StateReader

# tagged_hash(tag, data) = sha256(tag + 0x00 + data): the prefix is fed once, then copied
_KEY_HASHER, _VALUE_HASHER, _NODE_HASHER = (
    hashlib.sha256(tag + b"\x00") for tag in (_KEY_TAG, _VALUE_TAG, _NODE_TAG))

RESERVED_PREFIX = b"~"
BUCKET_PREFIX = b"~b"
NODE_PREFIX = b"~n"


def bucket_key(index: int) -> bytes:
    return BUCKET_PREFIX + index.to_bytes(2, "big")


def node_key(level: int, index: int) -> bytes:
    return NODE_PREFIX + bytes([level]) + index.to_bytes(2, "big")


def app_hash_of(state: StateReader) -> bytes:
    return node_hash(state.get(node_key(0, 0)) or DEFAULT_NODE[0])


def update_app_hash(state: Overlay, writes: Iterable[tuple[bytes, bytes | None]]) -> bytes:
    """Fold `writes` (committed keys only are considered) into the tree stored in `state`.

    This runs once per block over every key the block wrote, so it is written for speed:
    the tagged hashes reuse pre-fed hashers, a bucket is edited as its list of 64-byte
    pairs, and each inner node is rebuilt once from its 16 child hashes.
    """
    by_bucket: dict[int, list[tuple[bytes, bytes | None]]] = {}
    key_hasher, value_hasher = _KEY_HASHER.copy, _VALUE_HASHER.copy
    for key, value in writes:
        if key[:1] == RESERVED_PREFIX:
            continue
        h = key_hasher()
        h.update(key)
        khash = h.digest()
        if value is None:
            vhash = None
        else:
            h = value_hasher()
            h.update(value)
            vhash = h.digest()
        index = (khash[0] << 8) | khash[1]
        entry = by_bucket.get(index)
        if entry is None:
            by_bucket[index] = [(khash, vhash)]
        else:
            entry.append((khash, vhash))
    if not by_bucket:
        return app_hash_of(state)
    get, put, delete = state.get, state.put, state.delete
    # children[i]: the new hashes of the touched children of node i at the level above
    children: dict[int, list[tuple[int, bytes]]] = {}
    for index in sorted(by_bucket):
        digest = _update_bucket(state, index, by_bucket[index])
        parent = index // FANOUT
        slot = index % FANOUT
        siblings = children.get(parent)
        if siblings is None:
            children[parent] = [(slot, digest)]
        else:
            siblings.append((slot, digest))
    node_hasher = _NODE_HASHER.copy
    for level in range(DEPTH - 1, -1, -1):
        default = DEFAULT_NODE[level]
        above: dict[int, list[tuple[int, bytes]]] = {}
        for index, touched in children.items():
            key = NODE_PREFIX + bytes((level, index >> 8, index & 0xFF))
            record = get(key) or default
            if len(touched) == 1:
                slot, child = touched[0]
                start = slot * HASH
                new_record = record[:start] + child + record[start + HASH:]
            else:
                parts = [record[i:i + HASH] for i in range(0, NODE_SIZE, HASH)]
                for slot, child in touched:
                    parts[slot] = child
                new_record = b"".join(parts)
            if new_record == default:
                delete(key)
            else:
                put(key, new_record)
            h = node_hasher()
            h.update(new_record)
            digest = h.digest()
            parent = index // FANOUT
            siblings = above.get(parent)
            if siblings is None:
                above[parent] = [(index % FANOUT, digest)]
            else:
                siblings.append((index % FANOUT, digest))
        children = above
    return children[0][0][1]


def _update_bucket(state: Overlay, index: int, updates: list[tuple[bytes, bytes | None]]) -> bytes:
    key = BUCKET_PREFIX + index.to_bytes(2, "big")
    record = state.get(key) or b""
    # the bucket as its sorted 64-byte (key_hash, value_hash) pairs; a 32-byte key hash
    # sorts just before its own pair, so bisect on the bare key hash finds it
    pairs = [record[i:i + PAIR] for i in range(0, len(record), PAIR)]
    for khash, vhash in updates:
        pos = bisect_left(pairs, khash)
        present = pos < len(pairs) and pairs[pos][:HASH] == khash
        if vhash is None:
            if present:
                del pairs[pos]
        elif present:
            pairs[pos] = khash + vhash
        else:
            pairs.insert(pos, khash + vhash)
    new_record = b"".join(pairs)
    if new_record:
        state.put(key, new_record)
    else:
        state.delete(key)
    return bucket_hash(new_record)


def prove(state: StateReader, key: bytes) -> list[bytes]:
    """Proof of `key`'s current value or absence, for proof.verify_state_proof."""
    index = bucket_index(key_hash(key))
    proof = [state.get(bucket_key(index)) or b""]
    position = index
    for level in range(DEPTH - 1, -1, -1):
        position //= FANOUT
        proof.append(state.get(node_key(level, position)) or DEFAULT_NODE[level])
    return proof


def recompute_app_hash(state: StateReader) -> bytes:
    """From-scratch app hash of every committed key (for tests and audits; slow)."""
    scratch = Overlay(EmptyState())
    update_app_hash(scratch, ((k, v) for k, v in state.iterate(b"") if not k.startswith(RESERVED_PREFIX)))
    return app_hash_of(scratch)


class EmptyState:
    """A reader with no keys (the base of genesis and from-scratch recomputation)."""

    def get(self, key: bytes) -> None:
        return None

    def iterate(self, prefix: bytes, start: bytes | None = None, reverse: bool = False):
        return iter(())
