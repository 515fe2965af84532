"""The LevelDB backend (plyvel): the default store of a node.

LevelDB applies a WriteBatch atomically: the batch is one record in its log, and recovery
drops a record that was only partly written, so a process killed mid-write loses the whole
batch or nothing. `sync=True` fsyncs the log before returning, which makes a commit survive
an OS crash or power loss too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import plyvel

from storage.errors import StorageError, StoreCorruptionError, StoreLockedError
from storage.kv import KVPair, KVSnapshot, KVStore, WriteBatch, scan_range

DEFAULT_CACHE_BYTES = 64 * 1024 * 1024
DEFAULT_WRITE_BUFFER_BYTES = 16 * 1024 * 1024


class LevelDBStore(KVStore):
    """A KVStore in a LevelDB directory. One process at a time may hold it open."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        write_buffer_bytes: int = DEFAULT_WRITE_BUFFER_BYTES,
        bloom_filter_bits: int = 10,
        compression: str | None = None,
        max_open_files: int = 512,
    ) -> None:
        self.path = os.fspath(path)
        try:
            self._db = plyvel.DB(
                self.path,
                create_if_missing=True,
                bloom_filter_bits=bloom_filter_bits,
                lru_cache_size=cache_bytes,
                write_buffer_size=write_buffer_bytes,
                compression=compression,
                max_open_files=max_open_files,
            )
        except plyvel.IOError as exc:
            message = str(exc)
            if "lock" in message.lower():
                raise StoreLockedError(
                    f"cannot open {self.path}: data dir is locked by another node?"
                ) from None
            raise StorageError(f"cannot open {self.path}: {message}") from None
        except plyvel.CorruptionError as exc:
            raise StoreCorruptionError(f"cannot open {self.path}: {exc}") from None
        # The hot path: bind plyvel's C method directly so `get` costs one call.
        self.get = self._db.get  # type: ignore[method-assign]

    def get(self, key: bytes) -> bytes | None:  # replaced per instance in __init__
        return self._db.get(key)

    def iterate(
        self, prefix: bytes, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[KVPair]:
        return _scan(self._db, prefix, start, reverse)

    def write(self, batch: WriteBatch, sync: bool = False) -> None:
        wb = self._db.write_batch(sync=sync)
        put, delete = wb.put, wb.delete
        for key, value in batch.ops:
            if value is None:
                delete(key)
            else:
                put(key, value)
        wb.write()

    def snapshot(self) -> KVSnapshot:
        if self._db.closed:
            raise StorageError(f"{self.path} is closed")
        return LevelDBSnapshot(self._db.snapshot())

    def close(self) -> None:
        if not self._db.closed:
            self._db.close()

    @property
    def closed(self) -> bool:
        return self._db.closed


class LevelDBSnapshot(KVSnapshot):
    """A LevelDB snapshot: reads see the store as of its creation. LevelDB snapshots and
    reads are thread-safe, and plyvel releases the GIL while LevelDB reads."""

    def __init__(self, snapshot: plyvel._plyvel.Snapshot) -> None:
        self._snapshot = snapshot
        self.get = snapshot.get  # type: ignore[method-assign]

    def get(self, key: bytes) -> bytes | None:  # replaced per instance in __init__
        return self._snapshot.get(key)

    def iterate(
        self, prefix: bytes, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[KVPair]:
        return _scan(self._snapshot, prefix, start, reverse)

    def close(self) -> None:
        self._snapshot.close()


def _scan(source: plyvel.DB | plyvel._plyvel.Snapshot, prefix: bytes, start: bytes | None,
          reverse: bool) -> Iterator[KVPair]:
    bounds = scan_range(prefix, start, reverse)
    if bounds is None:
        return iter(())
    lo, hi, hi_inclusive = bounds
    # Created here, not lazily in a generator, so LevelDB's snapshot is taken at call time.
    return source.iterator(start=lo, stop=hi, include_stop=hi_inclusive, reverse=reverse)
