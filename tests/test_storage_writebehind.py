"""storage.writebehind: reads see a batch as soon as it is handed over, snapshots only once
it is written, and a failed write is never lost sight of."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.kv import MemoryStore, WriteBatch
from storage.writebehind import WriteBehind


class _GatedStore(MemoryStore):
    """A MemoryStore whose writes wait until the test opens the gate: a batch stays in
    flight for as long as the test wants to look at it."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.fail = False

    def write(self, batch: WriteBatch, sync: bool = False) -> None:
        assert self.gate.wait(10), "the test never opened the gate"
        if self.fail:
            raise OSError("disk full")
        super().write(batch, sync)


def _batch(ops) -> WriteBatch:
    batch = WriteBatch()
    for key, value in ops:
        if value is None:
            batch.delete(key)
        else:
            batch.put(key, value)
    return batch


def _everything(reader, scans):
    return [reader.get(bytes([k])) for k in range(6)] + [
        list(reader.iterate(prefix, start, reverse)) for prefix, start, reverse in scans]


_key = st.binary(min_size=1, max_size=2).map(lambda b: bytes([b[0] % 6]) + b[1:])
_ops = st.lists(st.tuples(_key, st.one_of(st.none(), st.binary(max_size=2))), max_size=12)
_scans = st.lists(st.tuples(st.binary(max_size=1), st.one_of(st.none(), _key), st.booleans()),
                  min_size=1, max_size=6)


@settings(max_examples=80, deadline=None)
@given(blocks=st.lists(_ops, min_size=1, max_size=5), scans=_scans)
def test_reads_see_the_batch_in_flight_and_snapshots_see_it_once_written(blocks, scans):
    scans = [(b"", None, False), (b"", None, True), *scans]
    inner, model = _GatedStore(), MemoryStore()
    store = WriteBehind(inner)
    for ops in blocks:
        inner.gate.clear()
        before = model.snapshot()
        durable = store.write_behind(_batch(ops))
        model.write(_batch(ops))
        assert not durable.done()
        assert _everything(store, scans) == _everything(model, scans)
        with store.snapshot() as snapshot:  # other threads: not yet
            assert _everything(snapshot, scans) == _everything(before, scans)
        inner.gate.set()
        durable.result(10)
        assert _everything(store, scans) == _everything(model, scans)
        with store.snapshot() as snapshot:
            assert _everything(snapshot, scans) == _everything(model, scans)
    store.flush()
    assert _everything(store, scans) == _everything(model, scans)
    store.close()


def test_batches_land_one_at_a_time_in_order():
    inner = _GatedStore()
    inner.gate.set()
    store = WriteBehind(inner)
    for i in range(50):
        store.write_behind(_batch([(b"k", b"%d" % i), (b"k%d" % i, b"x")]))
    store.flush()
    assert inner.get(b"k") == b"49" and all(inner.get(b"k%d" % i) for i in range(50))
    store.close()
    assert inner._closed


def test_a_failed_write_raises_at_every_later_write_and_at_close():
    inner = _GatedStore()
    store = WriteBehind(inner)
    inner.fail = True
    durable = store.write_behind(_batch([(b"a", b"1")]))
    assert store.get(b"a") == b"1"  # handed over: the owner reads it
    inner.gate.set()
    with pytest.raises(OSError):
        durable.result(10)
    inner.fail = False
    with pytest.raises(OSError):
        store.write_behind(_batch([(b"b", b"2")]))
    with pytest.raises(OSError):
        store.write(_batch([(b"b", b"2")]))
    with pytest.raises(OSError):
        store.close()
    assert inner._closed and len(inner) == 0  # closed all the same; nothing was written


def test_a_synchronous_write_waits_for_the_batch_in_flight():
    inner = _GatedStore()
    store = WriteBehind(inner)
    store.write_behind(_batch([(b"a", b"1"), (b"b", b"1")]))
    done = threading.Event()

    def write_now() -> None:
        store.write(_batch([(b"a", b"2")]))
        done.set()

    thread = threading.Thread(target=write_now)
    thread.start()
    assert not done.wait(0.2)
    inner.gate.set()
    thread.join(10)
    assert done.is_set() and inner.get(b"a") == b"2" and inner.get(b"b") == b"1"
    store.close()
