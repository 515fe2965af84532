"""Key layout of the chain database: one LevelDB, one single-byte namespace per store.

Integers in keys are fixed-width big-endian, so bytewise key order is numeric order and
range scans (blocks by height, newest-first tx pages) are plain LevelDB iterations.
The full table is in docs/storage.md; change it only together with that document.
"""

from __future__ import annotations

import struct

NS_META = b"M"  # M <name>                      -> value (see META_* below)
NS_BLOCK = b"B"  # B <height:8>                  -> block bytes (opaque, consensus format)
NS_COMMIT = b"C"  # C <height:8>                 -> commit certificate bytes (opaque)
NS_BLOCK_HASH = b"H"  # H <block hash>           -> <height:8>
NS_STATE = b"S"  # S <state key>                 -> state value (commerce VM format)
NS_TX = b"T"  # T <sub-index> ...                -> see storage/txindex.py

META_BLOCK_HEIGHT = b"block_height"  # <height:8> of the newest stored block
META_STATE = b"state"  # <height:8><app hash>: the block height the state is at

_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")
MAX_U64 = 2**64 - 1
MAX_U32 = 2**32 - 1


def u64(value: int) -> bytes:
    return _U64.pack(value)


def read_u64(data: bytes, offset: int = 0) -> int:
    return _U64.unpack_from(data, offset)[0]


def u32(value: int) -> bytes:
    return _U32.pack(value)


def read_u32(data: bytes, offset: int = 0) -> int:
    return _U32.unpack_from(data, offset)[0]
