"""Incremental app hash over the state (see proof.py for the tree's shape).

The tree lives in the state itself under the reserved prefix `~`, which the commitment
excludes: `~b<bucket:2>` holds a bucket's sorted (key_hash, value_hash) pairs, `~n<level:1>
<index:2>` an inner node's 16 child hashes. Empty buckets and default nodes are not stored.
A block rehashes only the buckets it touched and their paths to the root.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable

from .proof import (
    DEFAULT_NODE,
    DEPTH,
    FANOUT,
    HASH,
    PAIR,
    bucket_hash,
    bucket_index,
    key_hash,
    node_hash,
    value_hash,
)
from .state import Overlay, StateReader

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
    """Fold `writes` (committed keys only are considered) into the tree stored in `state`."""
    by_bucket: dict[int, list[tuple[bytes, bytes | None]]] = {}
    for key, value in writes:
        if key.startswith(RESERVED_PREFIX):
            continue
        khash = key_hash(key)
        by_bucket.setdefault(bucket_index(khash), []).append(
            (khash, None if value is None else value_hash(value))
        )
    if not by_bucket:
        return app_hash_of(state)
    hashes: dict[int, bytes] = {}
    for index in sorted(by_bucket):
        hashes[index] = _update_bucket(state, index, by_bucket[index])
    for level in range(DEPTH - 1, -1, -1):
        parents: dict[int, list[tuple[int, bytes]]] = {}
        for index in sorted(hashes):
            parents.setdefault(index // FANOUT, []).append((index % FANOUT, hashes[index]))
        hashes = {}
        for parent, children in parents.items():
            key = node_key(level, parent)
            record = bytearray(state.get(key) or DEFAULT_NODE[level])
            for slot, child in children:
                record[slot * HASH:(slot + 1) * HASH] = child
            new_record = bytes(record)
            if new_record == DEFAULT_NODE[level]:
                state.delete(key)
            else:
                state.put(key, new_record)
            hashes[parent] = node_hash(new_record)
    return hashes[0]


def _update_bucket(state: Overlay, index: int, updates: list[tuple[bytes, bytes | None]]) -> bytes:
    key = bucket_key(index)
    record = state.get(key) or b""
    khashes = [record[i:i + HASH] for i in range(0, len(record), PAIR)]
    vhashes = [record[i + HASH:i + PAIR] for i in range(0, len(record), PAIR)]
    for khash, vhash in updates:
        pos = bisect_left(khashes, khash)
        present = pos < len(khashes) and khashes[pos] == khash
        if vhash is None:
            if present:
                del khashes[pos]
                del vhashes[pos]
        elif present:
            vhashes[pos] = vhash
        else:
            khashes.insert(pos, khash)
            vhashes.insert(pos, vhash)
    new_record = b"".join(k + v for k, v in zip(khashes, vhashes, strict=True))
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
