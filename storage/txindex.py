"""Transaction index: by hash, by account, by type and by height.

Key layout (all under the `T` namespace; h = height as 8 bytes big-endian,
i = index in block as 4 bytes big-endian):

    T h <tx hash>               -> h i <code:4>     where a tx is and how it ended
    T a <address:20> h i        -> <tx hash>        every tx that involves an account
    T t <type key> h i          -> <tx hash>        every tx of one type
    T b h                       -> (i <len:1> <tx hash>)*   the txs of one block, in order

The txs of a block are one record, not one key each: each key costs the commit's LevelDB
write about 1 µs besides its bytes, and nothing pages through a block's list. Stores
written before that keep `T b h i -> <tx hash>`, which `by_height` still reads.

Because (h, i) ends each account and type key, a descending scan from a cursor gives
newest-first pages without reading anything outside the page. The type key is `i` +
2-byte number for integer types and `s` + 1-byte length + UTF-8 for named types, so no
type key is a prefix of another.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from storage.blocks import check_height
from storage.errors import StoreCorruptionError
from storage.kv import KVReader, WriteBatch
from storage.layout import MAX_U32, NS_TX, read_u32, read_u64, u32, u64

SUB_HASH = NS_TX + b"h"
SUB_ACCOUNT = NS_TX + b"a"
SUB_TYPE = NS_TX + b"t"
SUB_BLOCK = NS_TX + b"b"

ADDRESS_SIZE = 20
MAX_TX_HASH_SIZE = 64
MAX_TYPE_NAME = 64

Cursor = tuple[int, int]  # (height, index) of the next tx a page should return


class TxIndexEntry(NamedTuple):
    """What the index records about one included tx (a NamedTuple: a block makes thousands,
    and one is made in less than half the time of a frozen dataclass)."""

    tx_hash: bytes
    index: int  # position in the block
    code: int  # result code: 0 = success, else the VM's stable error code
    tx_type: int | str
    addresses: Sequence[bytes]  # sender and every other account the tx involves


@dataclass(frozen=True, slots=True)
class TxLocation:
    height: int
    index: int
    code: int


@dataclass(frozen=True, slots=True)
class TxRef:
    height: int
    index: int
    tx_hash: bytes


@dataclass(frozen=True, slots=True)
class TxPage:
    items: list[TxRef]
    next_cursor: Cursor | None  # pass back to get the following page; None: no more


def type_key(tx_type: int | str) -> bytes:
    if type(tx_type) is int:
        if not 0 <= tx_type <= 0xFFFF:
            raise ValueError("integer tx type must be in 0..65535")
        return b"i" + tx_type.to_bytes(2, "big")
    if isinstance(tx_type, str):
        name = tx_type.encode("utf-8")
        if not 0 < len(name) <= MAX_TYPE_NAME:
            raise ValueError(f"tx type name must be 1..{MAX_TYPE_NAME} bytes")
        return b"s" + bytes([len(name)]) + name
    raise ValueError(f"tx type must be an int or a str, got {type(tx_type).__name__}")


def _position(height: int, index: int) -> bytes:
    if type(index) is not int or not 0 <= index <= MAX_U32:
        raise ValueError(f"tx index in block must be in 0..2^32-1, got {index!r}")
    return u64(check_height(height)) + u32(index)


class TxIndex:
    def __init__(self, store: KVReader) -> None:
        self._store = store

    def index(self, batch: WriteBatch, height: int, entries: Iterable[TxIndexEntry]) -> None:
        """Add every entry of the block at `height` to `batch` (every value is checked; the
        ops go straight into the batch, a block has thousands)."""
        block_pos = u64(check_height(height))
        append = batch.ops.append
        type_keys: dict[int | str, bytes] = {}
        block_list: list[bytes] = []
        for entry in entries:
            tx_hash = entry.tx_hash
            if type(tx_hash) is not bytes or not 0 < len(tx_hash) <= MAX_TX_HASH_SIZE:
                raise ValueError("tx hash must be 1..64 bytes")
            if type(entry.code) is not int or not 0 <= entry.code <= MAX_U32:
                raise ValueError("result code must be in 0..2^32-1")
            index = entry.index
            if type(index) is not int or not 0 <= index <= MAX_U32:
                raise ValueError(f"tx index in block must be in 0..2^32-1, got {index!r}")
            pos = block_pos + u32(index)
            kind = type_keys.get(entry.tx_type)
            if kind is None:
                kind = type_keys[entry.tx_type] = SUB_TYPE + type_key(entry.tx_type)
            append((SUB_HASH + tx_hash, pos + u32(entry.code)))
            block_list.append(u32(index) + bytes((len(tx_hash),)) + tx_hash)
            append((kind + pos, tx_hash))
            seen: list[bytes] = []
            for address in entry.addresses:
                if type(address) is not bytes or len(address) != ADDRESS_SIZE:
                    raise ValueError("an indexed address is 20 bytes")
                if address not in seen:  # the sender is often also a party: one entry
                    seen.append(address)
                    append((SUB_ACCOUNT + address + pos, tx_hash))
        if block_list:
            append((SUB_BLOCK + block_pos, b"".join(block_list)))

    def by_hash(self, tx_hash: bytes) -> TxLocation | None:
        raw = self._store.get(SUB_HASH + tx_hash)
        if raw is None:
            return None
        if len(raw) != 16:
            raise StoreCorruptionError("tx location record is not 16 bytes")
        return TxLocation(read_u64(raw), read_u32(raw, 8), read_u32(raw, 12))

    def by_height(self, height: int) -> list[TxRef]:
        prefix = SUB_BLOCK + u64(check_height(height))
        packed = self._store.get(prefix)
        if packed is None:  # no txs, or a store written with a key per tx
            return [_ref(key, len(SUB_BLOCK), value)
                    for key, value in self._store.iterate(prefix)]
        refs, at = [], 0
        while at < len(packed):
            if at + 5 > len(packed) or at + 5 + packed[at + 4] > len(packed) \
                    or not packed[at + 4]:
                raise StoreCorruptionError("a block's tx list record is cut short")
            end = at + 5 + packed[at + 4]
            refs.append(TxRef(height, read_u32(packed, at), packed[at + 5:end]))
            at = end
        refs.sort(key=lambda ref: ref.index)
        return refs

    def by_account(self, address: bytes, limit: int, cursor: Cursor | None = None) -> TxPage:
        """Txs involving `address`, newest first, `limit` at a time."""
        if type(address) is not bytes or len(address) != ADDRESS_SIZE:
            raise ValueError("an address is 20 bytes")
        return self._page(SUB_ACCOUNT + address, limit, cursor)

    def by_type(self, tx_type: int | str, limit: int, cursor: Cursor | None = None) -> TxPage:
        """Txs of one type, newest first, `limit` at a time."""
        return self._page(SUB_TYPE + type_key(tx_type), limit, cursor)

    def _page(self, prefix: bytes, limit: int, cursor: Cursor | None) -> TxPage:
        if type(limit) is not int or limit < 1:
            raise ValueError("page limit must be a positive integer")
        if cursor is not None and (not isinstance(cursor, (tuple, list)) or len(cursor) != 2):
            raise ValueError("a cursor is a (height, index) pair")
        start = None if cursor is None else prefix + _position(cursor[0], cursor[1])
        scan = self._store.iterate(prefix, start, reverse=True)
        cut = len(prefix)
        refs = [_ref(key, cut, value) for key, value in itertools.islice(scan, limit + 1)]
        if len(refs) <= limit:
            return TxPage(refs, None)
        following = refs.pop()
        return TxPage(refs, (following.height, following.index))


def _ref(key: bytes, cut: int, tx_hash: bytes) -> TxRef:
    if len(key) != cut + 12:
        raise StoreCorruptionError("tx index key has the wrong length")
    return TxRef(read_u64(key, cut), read_u32(key, cut + 8), tx_hash)
