"""Blocks and their commit certificates, by height and by hash.

Blocks and commits are opaque bytes here: consensus defines and verifies them. The store
only files them so that a height or a block hash finds them in one read, and range reads
for block sync are a single ordered scan.
"""

from __future__ import annotations

from collections.abc import Iterator

from storage.errors import StoreCorruptionError
from storage.kv import KVReader, WriteBatch
from storage.layout import (
    MAX_U64,
    META_BLOCK_HEIGHT,
    NS_BLOCK,
    NS_BLOCK_HASH,
    NS_COMMIT,
    NS_META,
    read_u64,
    u64,
)

MAX_BLOCK_HASH_SIZE = 64


def check_height(height: int) -> int:
    if type(height) is not int or not 0 <= height <= MAX_U64:
        raise ValueError(f"height must be an integer in 0..2^64-1, got {height!r}")
    return height


class BlockStore:
    def __init__(self, store: KVReader) -> None:
        self._store = store

    def put(
        self,
        batch: WriteBatch,
        height: int,
        block_hash: bytes,
        block_bytes: bytes,
        commit_bytes: bytes,
    ) -> None:
        """Add the block at `height` to `batch` and make it the latest height."""
        h = u64(check_height(height))
        if type(block_hash) is not bytes or not 0 < len(block_hash) <= MAX_BLOCK_HASH_SIZE:
            raise ValueError("block hash must be 1..64 bytes")
        batch.put(NS_BLOCK + h, block_bytes)
        batch.put(NS_COMMIT + h, commit_bytes)
        batch.put(NS_BLOCK_HASH + block_hash, h)
        batch.put(NS_META + META_BLOCK_HEIGHT, h)

    def latest_height(self) -> int | None:
        raw = self._store.get(NS_META + META_BLOCK_HEIGHT)
        if raw is None:
            return None
        if len(raw) != 8:
            raise StoreCorruptionError("latest block height record is not 8 bytes")
        return read_u64(raw)

    def get_block(self, height: int) -> bytes | None:
        return self._store.get(NS_BLOCK + u64(check_height(height)))

    def get_commit(self, height: int) -> bytes | None:
        return self._store.get(NS_COMMIT + u64(check_height(height)))

    def height_of(self, block_hash: bytes) -> int | None:
        raw = self._store.get(NS_BLOCK_HASH + block_hash)
        if raw is None:
            return None
        if len(raw) != 8:
            raise StoreCorruptionError("block hash index entry is not 8 bytes")
        return read_u64(raw)

    def get_block_by_hash(self, block_hash: bytes) -> tuple[int, bytes] | None:
        """(height, block bytes) of the block with this hash, or None."""
        height = self.height_of(block_hash)
        if height is None:
            return None
        block = self.get_block(height)
        if block is None:
            raise StoreCorruptionError(f"block hash indexed at height {height} has no block")
        return height, block

    def get_commit_by_hash(self, block_hash: bytes) -> bytes | None:
        height = self.height_of(block_hash)
        return None if height is None else self.get_commit(height)

    def iter_blocks(
        self, start_height: int, end_height: int | None = None
    ) -> Iterator[tuple[int, bytes, bytes]]:
        """(height, block, commit) for stored heights in [start_height, end_height].

        Two ordered scans walked in lockstep: one seek each instead of two reads per block,
        which is what block sync and replay want.
        """
        start = u64(check_height(start_height))
        stop = MAX_U64 if end_height is None else check_height(end_height)
        blocks = self._store.iterate(NS_BLOCK, NS_BLOCK + start)
        commits = self._store.iterate(NS_COMMIT, NS_COMMIT + start)
        for (block_key, block), (commit_key, commit) in zip(blocks, commits, strict=False):
            if block_key[1:] != commit_key[1:]:
                raise StoreCorruptionError("block and commit heights disagree")
            height = read_u64(block_key, 1)
            if height > stop:
                return
            yield height, block, commit
