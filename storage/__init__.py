"""Storage: a bytes->bytes KV interface with atomic batches, and the chain's stores on it.

- kv:            KVStore, KVSnapshot, WriteBatch, MemoryStore, PrefixedView
- leveldb:       LevelDBStore (plyvel), the default backend
- chaindb:       ChainDB: blocks + state + tx index in one store, one synced batch per commit;
                 ChainSnapshot: its read side at one committed height, for other threads
- blocks/state/txindex: the stores ChainDB exposes
- wal:           the consensus write-ahead log (CRC-framed, torn-tail recovery)
- signing_state: the validator's last-signed (height, round, step), fsynced, monotonic

Key layouts, file formats and the crash-consistency argument: docs/storage.md.
"""

from storage.blocks import BlockStore
from storage.chaindb import ChainDB, ChainSnapshot
from storage.errors import (
    SigningStateError,
    StorageError,
    StoreCorruptionError,
    StoreLockedError,
    WALError,
)
from storage.kv import KVReader, KVSnapshot, KVStore, MemoryStore, PrefixedView, WriteBatch
from storage.signing_state import SigningState, SigningStateFile
from storage.state import StateMeta, StateStore
from storage.txindex import TxIndex, TxIndexEntry, TxLocation, TxPage, TxRef
from storage.wal import WAL, WALEntry

__all__ = [
    "BlockStore",
    "ChainDB",
    "ChainSnapshot",
    "KVReader",
    "KVSnapshot",
    "KVStore",
    "MemoryStore",
    "PrefixedView",
    "SigningState",
    "SigningStateError",
    "SigningStateFile",
    "StateMeta",
    "StateStore",
    "StorageError",
    "StoreCorruptionError",
    "StoreLockedError",
    "TxIndex",
    "TxIndexEntry",
    "TxLocation",
    "TxPage",
    "TxRef",
    "WAL",
    "WALEntry",
    "WALError",
    "WriteBatch",
]
