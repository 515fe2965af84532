"""A store whose batches become durable on a writer thread while its owner goes on.

A node's commit used to wait for its synced batch write (a fifth of a lone validator's
time): the LevelDB log append, the memtable inserts and the fsync. `WriteBehind` hands the
batch to one writer thread and returns at once. Until the write lands, the batch is kept
as a dict and every read through this store looks there first, so the owner reads its
own writes: the next block executes on the state the last one left.

What is not yet durable is visible only to this store's reads. `snapshot()` is the inner
store's, so a reader on another thread (the RPC thread) sees a batch once it is written,
never before; `durable` tells the owner when that is. One batch is in flight at a time:
the next `write_behind`, `write` or `flush` waits for it first and raises what it raised
(a failed write is never silently dropped). Batches land in the order they were handed.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from storage.kv import KVPair, KVSnapshot, KVStore, WriteBatch, scan_range

_ABSENT = object()


def _done() -> Future[None]:
    future: Future[None] = Future()
    future.set_result(None)
    return future


class WriteBehind(KVStore):
    """`store` with `write_behind`. Reads and writes belong to one owner thread; the inner
    store must allow a write on the writer thread while the owner reads (LevelDB and
    MemoryStore do)."""

    def __init__(self, store: KVStore, after_write: Callable[[], None] = lambda: None) -> None:
        self.store = store
        self._after_write = after_write  # on the writer thread, once a batch is durable
        self._pending: dict[bytes, bytes | None] = {}
        self._pending_keys: list[bytes] | None = []  # sorted, built when a scan needs it
        self._in_flight: Future[None] = _done()
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="chaindb-writer")
        self._closed = False

    @property
    def durable(self) -> Future[None]:
        """Done when the last batch handed over is durable (or failed: then it raises)."""
        return self._in_flight

    def write_behind(self, batch: WriteBatch, sync: bool = True) -> Future[None]:
        """Hand `batch` to the writer; reads here see it from now on. The future is done
        when the batch is written (and, with `sync`, fsynced)."""
        self.wait()
        pending: dict[bytes, bytes | None] = {}
        for key, value in batch.ops:
            pending[key] = value
        # Replaced, never mutated: a scan holding the old dict still merges what it saw.
        self._pending, self._pending_keys = pending, None
        # The batch's Python work here: a writer thread that held the GIL through
        # thousands of puts would stall the owner at every switch interval.
        write = self.store.prepare_write(batch, sync)
        self._in_flight = self._writer.submit(self._write, write)
        return self._in_flight

    def _write(self, write: Callable[[], None]) -> None:
        write()
        self._after_write()

    def wait(self) -> None:
        """Block until the batch in flight is durable; raise what its write raised."""
        self._in_flight.result()

    def flush(self) -> None:
        """`wait`, then drop the copy of the written batch."""
        self.wait()
        self._pending, self._pending_keys = {}, []

    # --- KVStore ----------------------------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        value = self._pending.get(key, _ABSENT)
        return self.store.get(key) if value is _ABSENT else value  # type: ignore[return-value]

    def iterate(
        self, prefix: bytes, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[KVPair]:
        pending = self._pending
        if not pending:
            return self.store.iterate(prefix, start, reverse)
        keys = self._pending_keys
        if keys is None:
            keys = self._pending_keys = sorted(pending)
        bounds = scan_range(prefix, start, reverse)
        if bounds is None:
            return iter(())
        lo, hi, hi_inclusive = bounds
        i = bisect.bisect_left(keys, lo)
        if hi is None:
            j = len(keys)
        elif hi_inclusive:
            j = bisect.bisect_right(keys, hi)
        else:
            j = bisect.bisect_left(keys, hi)
        if i == j:
            return self.store.iterate(prefix, start, reverse)
        ours = [(k, pending[k]) for k in keys[i:j]]
        if reverse:
            ours.reverse()
        return _merge(self.store.iterate(prefix, start, reverse), ours, reverse)

    def write(self, batch: WriteBatch, sync: bool = False) -> None:
        self.flush()
        self.store.write(batch, sync=sync)

    def snapshot(self) -> KVSnapshot:
        return self.store.snapshot()

    def close(self) -> None:
        """Wait for the batch in flight (raising its failure), then close the inner store."""
        if self._closed:
            return
        self._closed = True
        try:
            self.flush()
        finally:
            self._writer.shutdown(wait=True)
            self.store.close()


def _merge(stored: Iterator[KVPair], ours: list[tuple[bytes, bytes | None]],
           reverse: bool) -> Iterator[KVPair]:
    """The stored pairs with the pending batch's over them, in scan order: a pending value
    replaces the stored one, a pending delete (None) hides it."""
    # On equal keys the stored pair and ours meet one after the other: ours (tag 1) wins.
    merged = heapq.merge(((k, 0, v) for k, v in stored), ((k, 1, v) for k, v in ours),
                         key=lambda item: (item[0], item[1]), reverse=reverse)
    last: tuple[bytes, int, bytes | None] | None = None
    for item in merged:
        if last is not None and item[0] == last[0]:
            if item[1]:
                last = item
            continue
        if last is not None and last[2] is not None:
            yield last[0], last[2]
        last = item
    if last is not None and last[2] is not None:
        yield last[0], last[2]
