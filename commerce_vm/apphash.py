"""Incremental app hash over the state (see proof.py for the tree's shape).

It commits to every key but the tree's own, the secondary indexes and the expiry index
(`committed`). The tree lives in the state itself under the reserved prefix `~`, which the
commitment excludes: `~b<bucket:2>` holds a bucket's sorted (key_hash, value_hash) pairs,
`~n<level:1><index:2>` the 16 child hashes of an inner node of levels 0-2. Empty buckets
and default nodes are not stored. The 4,096 level-3 nodes are not stored either: each is
the 16 hashes of its buckets, so a proof reads those 16 buckets and a load hashes every
bucket. That
keeps about 1.5 MB (a 512-byte record per touched bucket's parent) out of a large block's
batch. A block rehashes only the buckets it touched and their paths to the root.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from .ledger import EXPIRY, INDEX_PREFIXES
from .proof import (
    _BUCKET_TAG,
    _KEY_TAG,
    _NODE_TAG,
    _VALUE_TAG,
    DEFAULT_HASH,
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
_KEY_HASHER, _VALUE_HASHER, _BUCKET_HASHER, _NODE_HASHER = (
    hashlib.sha256(tag + b"\x00") for tag in (_KEY_TAG, _VALUE_TAG, _BUCKET_TAG, _NODE_TAG))

RESERVED_PREFIX = b"~"
BUCKET_PREFIX = b"~b"
NODE_PREFIX = b"~n"


_INDEXES = frozenset(INDEX_PREFIXES)
assert all(len(prefix) == 3 for prefix in _INDEXES)  # `committed` looks at three bytes
assert len(EXPIRY) == 2  # and at two for the expiry index


def committed(key: bytes) -> bool:
    """Whether the app hash commits to `key`: not the tree's own records, not the
    secondary indexes and not the expiry index, which are functions of committed records
    (see ledger.py)."""
    return key[:1] != RESERVED_PREFIX and key[:3] not in _INDEXES and key[:2] != EXPIRY


def bucket_key(index: int) -> bytes:
    return BUCKET_PREFIX + index.to_bytes(2, "big")


def node_key(level: int, index: int) -> bytes:
    return NODE_PREFIX + bytes([level]) + index.to_bytes(2, "big")


def app_hash_of(state: StateReader) -> bytes:
    return node_hash(state.get(node_key(0, 0)) or DEFAULT_NODE[0])


STORED_LEVELS = DEPTH - 1  # levels 0..2 are stored; level 3 is derived from the buckets


class InnerTree:
    """Every inner node of one state's tree, in memory: `levels[l]` holds the records (16
    child hashes each) of all level-l nodes back to back, so node (l, i) is the 512 bytes at
    i * NODE_SIZE and the bucket hashes are `levels[DEPTH - 1]`. 2.2 MB in all; an update
    edits a copy in place instead of reading, splitting and joining each node it touches."""

    __slots__ = ("levels",)

    def __init__(self, levels: list[bytearray]):
        self.levels = levels

    @classmethod
    def load(cls, state: StateReader) -> InnerTree:
        """The tree of `state`, rebuilt from its buckets and checked against its stored
        root: a store whose buckets and root disagree is refused, not trusted."""
        levels = [bytearray(DEFAULT_HASH[level + 1] * FANOUT ** (level + 1))
                  for level in range(DEPTH)]
        bucket_hashes = levels[DEPTH - 1]
        for key, record in state.iterate(BUCKET_PREFIX):
            if len(key) != len(BUCKET_PREFIX) + 2 or not record or len(record) % PAIR:
                raise ValueError(f"malformed app-hash bucket {key!r} in the state")
            index = int.from_bytes(key[2:], "big")
            bucket_hashes[index * HASH:(index + 1) * HASH] = bucket_hash(record)
        view = [memoryview(level) for level in levels]
        for level in range(DEPTH - 2, -1, -1):  # each record: the hashes of its 16 children
            records, below = levels[level], view[level + 1]
            for child in range(FANOUT ** (level + 1)):
                records[child * HASH:(child + 1) * HASH] = \
                    node_hash(below[child * NODE_SIZE:(child + 1) * NODE_SIZE])
        for released in view:
            released.release()
        tree = cls(levels)
        if tree.root != app_hash_of(state):
            raise ValueError("the app-hash tree's buckets do not match its stored root")
        return tree

    def copy(self) -> InnerTree:
        return InnerTree([bytearray(level) for level in self.levels])

    @property
    def root(self) -> bytes:
        return node_hash(bytes(self.levels[0]))


class TreeCache:
    """The inner trees of the last few states a block was executed on or produced, by app
    hash: the next block's update starts from memory instead of loading its nodes. The app
    hash commits to the whole tree, so a tree found under a state's app hash is that
    state's tree; the cache changes how fast a root is computed, never which root."""

    def __init__(self, limit: int = 4):
        self.limit = limit
        self._trees: dict[bytes, InnerTree] = {}

    def __len__(self) -> int:
        return len(self._trees)

    def tree_of(self, state: StateReader) -> InnerTree:
        root = app_hash_of(state)
        tree = self._trees.pop(root, None)
        if tree is None:
            tree = InnerTree.load(state)
        self._trees[root] = tree  # most recently used last
        return tree

    def add(self, root: bytes, tree: InnerTree) -> None:
        self._trees.pop(root, None)
        self._trees[root] = tree
        while len(self._trees) > self.limit:
            del self._trees[next(iter(self._trees))]


def update_app_hash(state: Overlay, writes: Iterable[tuple[bytes, bytes | None]],
                    trees: TreeCache | None = None) -> bytes:
    """Fold `writes` (only `committed` keys count) into the tree stored in `state`.

    This runs once per block over every key the block wrote, so it is written for speed:
    the tagged hashes reuse pre-fed hashers, a bucket is edited as its list of 64-byte
    pairs, and the inner nodes are edited in an in-memory copy of the tree (from `trees`
    when it holds the tree of `state`'s base, else loaded), each touched node rehashed once.
    """
    by_bucket: dict[int, list[tuple[bytes, bytes | None]]] = {}
    key_hasher, value_hasher, indexes = _KEY_HASHER.copy, _VALUE_HASHER.copy, _INDEXES
    for key, value in writes:
        if key[:1] == RESERVED_PREFIX or key[:3] in indexes or key[:2] == EXPIRY:  # `committed`
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
    base = trees.tree_of(state) if trees is not None else InnerTree.load(state)
    tree = base.copy()
    put, delete = state.put, state.delete
    bucket_hashes = tree.levels[DEPTH - 1]
    touched = sorted(by_bucket)
    get, bucket_hasher = state.get, _BUCKET_HASHER.copy
    for index in touched:  # a loop, not a call per bucket: a block touches ~1,000
        key = BUCKET_PREFIX + index.to_bytes(2, "big")
        record = get(key)
        updates = by_bucket[index]
        if not record and len(updates) == 1 and updates[0][1] is not None:
            record = updates[0][0] + updates[0][1]  # a new key in an empty bucket
        else:
            record = record or b""
            for khash, vhash in updates:
                record = _edit_bucket(record, khash, vhash)
        if record:
            put(key, record)
        else:
            delete(key)
        h = bucket_hasher()
        h.update(record)
        bucket_hashes[index * HASH:(index + 1) * HASH] = h.digest()
    node_hasher = _NODE_HASHER.copy
    nodes = list(dict.fromkeys(index // FANOUT for index in touched))  # sorted, unique
    level3, parents = memoryview(tree.levels[DEPTH - 1]), tree.levels[DEPTH - 2]
    for index in nodes:  # level 3 is not stored (see the module's docstring): hash only
        h = node_hasher()
        h.update(level3[index * NODE_SIZE:(index + 1) * NODE_SIZE])
        parents[index * HASH:(index + 1) * HASH] = h.digest()
    level3.release()
    digest = b""
    for level in range(STORED_LEVELS - 1, -1, -1):
        nodes = list(dict.fromkeys(index // FANOUT for index in nodes))
        records, default = tree.levels[level], DEFAULT_NODE[level]
        above = tree.levels[level - 1] if level else None
        for index in nodes:
            record = bytes(records[index * NODE_SIZE:(index + 1) * NODE_SIZE])
            key = node_key(level, index)  # at most 273 stored nodes a block
            if record == default:
                delete(key)
            else:
                put(key, record)
            h = node_hasher()
            h.update(record)
            digest = h.digest()
            if above is not None:
                above[index * HASH:(index + 1) * HASH] = digest
    if trees is not None:
        trees.add(digest, tree)
    return digest


def _edit_bucket(record: bytes, khash: bytes, vhash: bytes | None) -> bytes:
    """`record` (sorted 64-byte (key_hash, value_hash) pairs) with khash's pair set to vhash
    or removed (None). A binary search over the pairs in place: most buckets hold one or
    two, and splitting each into a list cost more than the edit."""
    low, high = 0, len(record) // PAIR
    while low < high:
        middle = (low + high) >> 1
        if record[middle * PAIR:middle * PAIR + HASH] < khash:
            low = middle + 1
        else:
            high = middle
    at = low * PAIR
    present = record[at:at + HASH] == khash
    if vhash is None:
        return record[:at] + record[at + PAIR:] if present else record
    return record[:at] + khash + vhash + record[at + PAIR if present else at:]


def prove(state: StateReader, key: bytes) -> list[bytes]:
    """Proof of `key`'s current value or absence, for proof.verify_state_proof. Only a
    `committed` key has one (ValueError otherwise)."""
    if not committed(key):
        raise ValueError(f"the app hash does not commit to {key!r}")
    index = bucket_index(key_hash(key))
    proof = [state.get(bucket_key(index)) or b""]
    first = index - index % FANOUT  # the level-3 node: its 16 buckets' hashes
    proof.append(b"".join(bucket_hash(state.get(bucket_key(first + i)) or b"")
                          for i in range(FANOUT)))
    position = index // FANOUT
    for level in range(STORED_LEVELS - 1, -1, -1):
        position //= FANOUT
        proof.append(state.get(node_key(level, position)) or DEFAULT_NODE[level])
    return proof


def recompute_app_hash(state: StateReader) -> bytes:
    """From-scratch app hash of every committed key (for tests and audits; slow)."""
    scratch = Overlay(EmptyState())
    update_app_hash(scratch, state.iterate(b""))  # it skips the keys not `committed`
    return app_hash_of(scratch)


class EmptyState:
    """A reader with no keys (the base of genesis and from-scratch recomputation)."""

    def get(self, key: bytes) -> None:
        return None

    def iterate(self, prefix: bytes, start: bytes | None = None, reverse: bool = False):
        return iter(())
