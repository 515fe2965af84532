"""State commitment hashing and light-client proof verification. Imports only core.

The app hash commits to every state key outside the reserved prefix `~`:
- each key goes to one of 16**4 = 65,536 buckets by the first two bytes of its key hash;
- a bucket's hash covers its sorted (key_hash, value_hash) pairs;
- a fixed 16-ary tree of depth 4 sits over the bucket hashes; empty subtrees have
  precomputed default hashes; the root is the app hash.
Key, value, bucket and inner hashes use distinct tags, so one can never pass for another.

A proof for a key is [bucket_record, level3_node, level2_node, level1_node, root_node]: the
bucket's pairs, then for each level the 16 child hashes of the node on the key's path.
"""

from __future__ import annotations

from typing import Any

from core.hashing import tagged_hash

DEPTH = 4
FANOUT = 16
HASH = 32
PAIR = 2 * HASH
NODE_SIZE = FANOUT * HASH

_KEY_TAG = b"chainmerce/state/key"
_VALUE_TAG = b"chainmerce/state/value"
_BUCKET_TAG = b"chainmerce/state/bucket"
_NODE_TAG = b"chainmerce/state/node"


def key_hash(key: bytes) -> bytes:
    return tagged_hash(_KEY_TAG, key)


def value_hash(value: bytes) -> bytes:
    return tagged_hash(_VALUE_TAG, value)


def bucket_hash(record: bytes) -> bytes:
    return tagged_hash(_BUCKET_TAG, record)


def node_hash(record: bytes) -> bytes:
    return tagged_hash(_NODE_TAG, record)


def bucket_index(khash: bytes) -> int:
    return (khash[0] << 8) | khash[1]


# DEFAULT_HASH[level]: hash of an empty subtree rooted at that level (4 = a bucket).
DEFAULT_HASH: list[bytes] = [b""] * (DEPTH + 1)
DEFAULT_HASH[DEPTH] = bucket_hash(b"")
for _level in range(DEPTH - 1, -1, -1):
    DEFAULT_HASH[_level] = node_hash(DEFAULT_HASH[_level + 1] * FANOUT)
# DEFAULT_NODE[level]: the record of an empty node at that level (its 16 default children).
DEFAULT_NODE: list[bytes] = [DEFAULT_HASH[level + 1] * FANOUT for level in range(DEPTH)]
EMPTY_APP_HASH = DEFAULT_HASH[0]


def verify_state_proof(app_hash: bytes, key: bytes, value: bytes | None, proof: Any) -> bool:
    """True when `proof` shows that under `app_hash`, `key` holds `value` (None = absent)."""
    try:
        return _verify(app_hash, key, value, proof)
    except (TypeError, ValueError, IndexError):
        return False


def _verify(app_hash: bytes, key: bytes, value: bytes | None, proof: Any) -> bool:
    if not isinstance(proof, (list, tuple)) or len(proof) != DEPTH + 1:
        return False
    if not all(isinstance(part, bytes) for part in proof):
        return False
    bucket, nodes = proof[0], proof[1:]  # nodes: level 3, 2, 1, 0
    if len(bucket) % PAIR or any(len(node) != NODE_SIZE for node in nodes):
        return False
    khash = key_hash(key)
    index = bucket_index(khash)
    pairs = [bucket[i:i + PAIR] for i in range(0, len(bucket), PAIR)]
    found: bytes | None = None
    previous = b""
    for pair in pairs:
        pair_key = pair[:HASH]
        if pair_key <= previous or bucket_index(pair_key) != index:
            return False  # unsorted, duplicated or misplaced: not a bucket the tree could hold
        previous = pair_key
        if pair_key == khash:
            found = pair[HASH:]
    if value is None:
        if found is not None:
            return False
    elif found != value_hash(value):
        return False
    current = bucket_hash(bucket)
    position = index
    for node in nodes:
        slot = position % FANOUT
        if node[slot * HASH:(slot + 1) * HASH] != current:
            return False
        current = node_hash(node)
        position //= FANOUT
    return current == app_hash
