"""Contract tests for the KVStore backends: the same tests run on memory and LevelDB."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage.errors import StorageError, StoreLockedError
from storage.kv import MemoryStore, PrefixedView, WriteBatch, prefix_upper_bound, scan_range
from storage.leveldb import LevelDBStore


@pytest.fixture(params=["memory", "leveldb"])
def store(request, tmp_path):
    s = MemoryStore() if request.param == "memory" else LevelDBStore(tmp_path / "db")
    yield s
    s.close()


def put_all(store, items):
    batch = WriteBatch()
    for k, v in items:
        batch.put(k, v)
    store.write(batch, sync=False)


def keys(pairs):
    return [k for k, _ in pairs]


def test_get_put_delete(store):
    assert store.get(b"a") is None
    put_all(store, [(b"a", b"1"), (b"b", b"2")])
    assert store.get(b"a") == b"1"
    batch = WriteBatch()
    batch.delete(b"a")
    batch.delete(b"missing")  # deleting an absent key is not an error
    store.write(batch, sync=True)
    assert store.get(b"a") is None
    assert store.get(b"b") == b"2"


def test_empty_value_is_distinct_from_absent(store):
    put_all(store, [(b"k", b"")])
    assert store.get(b"k") == b""


def test_later_op_on_same_key_wins(store):
    batch = WriteBatch()
    batch.put(b"k", b"1")
    batch.put(b"k", b"2")
    batch.delete(b"gone")
    batch.put(b"gone", b"x")
    batch.put(b"d", b"1")
    batch.delete(b"d")
    store.write(batch)
    assert store.get(b"k") == b"2"
    assert store.get(b"gone") == b"x"
    assert store.get(b"d") is None


def test_batch_rejects_non_bytes():
    batch = WriteBatch()
    with pytest.raises(TypeError):
        batch.put("a", b"1")
    with pytest.raises(TypeError):
        batch.put(b"a", bytearray(b"1"))
    with pytest.raises(TypeError):
        batch.delete(1)
    assert len(batch) == 0


def test_iterate_prefix_in_ascending_order(store):
    put_all(store, [(k, k.upper()) for k in [b"b2", b"a1", b"b1", b"b", b"c", b"b\xff", b"ba"]])
    assert keys(store.iterate(b"b")) == [b"b", b"b1", b"b2", b"ba", b"b\xff"]
    assert list(store.iterate(b"a")) == [(b"a1", b"A1")]
    assert keys(store.iterate(b"z")) == []
    assert keys(store.iterate(b"")) == sorted([b"b2", b"a1", b"b1", b"b", b"c", b"b\xff", b"ba"])


def test_iterate_reverse(store):
    put_all(store, [(k, b"") for k in [b"a", b"b1", b"b2", b"b3", b"c"]])
    assert keys(store.iterate(b"b", reverse=True)) == [b"b3", b"b2", b"b1"]


def test_iterate_start_is_inclusive(store):
    put_all(store, [(k, b"") for k in [b"a", b"b1", b"b2", b"b3", b"c"]])
    assert keys(store.iterate(b"b", start=b"b2")) == [b"b2", b"b3"]
    assert keys(store.iterate(b"b", start=b"b2", reverse=True)) == [b"b2", b"b1"]
    # a start between keys
    assert keys(store.iterate(b"b", start=b"b15")) == [b"b2", b"b3"]
    assert keys(store.iterate(b"b", start=b"b15", reverse=True)) == [b"b1"]
    # a start outside the prefix range clamps to it
    assert keys(store.iterate(b"b", start=b"a")) == [b"b1", b"b2", b"b3"]
    assert keys(store.iterate(b"b", start=b"a", reverse=True)) == []
    assert keys(store.iterate(b"b", start=b"z")) == []
    assert keys(store.iterate(b"b", start=b"z", reverse=True)) == [b"b3", b"b2", b"b1"]


def test_iterate_prefix_of_ff_bytes(store):
    put_all(store, [(k, b"") for k in [b"\xff", b"\xff\xff", b"\xff\xff\x01", b"\xfe"]])
    assert keys(store.iterate(b"\xff\xff")) == [b"\xff\xff", b"\xff\xff\x01"]
    assert keys(store.iterate(b"\xff", reverse=True)) == [b"\xff\xff\x01", b"\xff\xff", b"\xff"]


def test_iterate_is_a_snapshot(store):
    put_all(store, [(b"k1", b"1"), (b"k2", b"2")])
    scan = store.iterate(b"k")
    put_all(store, [(b"k3", b"3"), (b"k1", b"changed")])
    assert list(scan) == [(b"k1", b"1"), (b"k2", b"2")]


def test_snapshot_does_not_see_later_writes(store):
    put_all(store, [(b"k1", b"1"), (b"k2", b"2")])
    snap = store.snapshot()
    put_all(store, [(b"k3", b"3"), (b"k1", b"changed")])
    delete = WriteBatch()
    delete.delete(b"k2")
    store.write(delete)
    assert snap.get(b"k1") == b"1" and snap.get(b"k2") == b"2" and snap.get(b"k3") is None
    assert list(snap.iterate(b"k")) == [(b"k1", b"1"), (b"k2", b"2")]
    assert list(snap.iterate(b"k", start=b"k2", reverse=True)) == [(b"k2", b"2"), (b"k1", b"1")]
    assert list(store.snapshot().iterate(b"k")) == [(b"k1", b"changed"), (b"k3", b"3")]
    snap.close()
    snap.close()  # idempotent


def test_snapshot_read_on_another_thread_sees_whole_batches(store):
    """A reader thread snapshotting while batches are written sees every batch entirely or
    not at all: each batch moves one unit between two keys, so the sum never changes."""
    import threading

    put_all(store, [(b"a", b"%d" % 1000), (b"b", b"0")])
    stop, seen, bad = threading.Event(), [], []

    def read() -> None:
        while not stop.is_set():
            with store.snapshot() as snap:
                a, b = int(snap.get(b"a")), int(snap.get(b"b"))
                if a + b != 1000:
                    bad.append((a, b))
                seen.append(b)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(1, 400):
            batch = WriteBatch()
            batch.put(b"a", b"%d" % (1000 - i))
            for filler in range(20):  # a batch long enough to be interrupted
                batch.put(b"f%d" % filler, b"%d" % i)
            batch.put(b"b", b"%d" % i)
            store.write(batch)
    finally:
        stop.set()
        reader.join()
    assert not bad and seen


def test_prefixed_view(store):
    view = PrefixedView(store, b"ns/")
    nested = PrefixedView(view, b"sub/")
    batch = WriteBatch()
    view.put(batch, b"a", b"1")
    view.put(batch, b"b", b"2")
    nested.put(batch, b"x", b"3")
    batch.put(b"other", b"4")
    store.write(batch)
    assert store.get(b"ns/a") == b"1"
    assert view.get(b"a") == b"1"
    assert view.get(b"other") is None
    assert list(view.iterate()) == [(b"a", b"1"), (b"b", b"2"), (b"sub/x", b"3")]
    assert list(view.iterate(b"", start=b"b", reverse=True)) == [(b"b", b"2"), (b"a", b"1")]
    assert list(nested.iterate()) == [(b"x", b"3")]
    assert nested.get(b"x") == b"3"
    batch = WriteBatch()
    view.delete(batch, b"a")
    store.write(batch)
    assert store.get(b"ns/a") is None


def test_prefixed_view_needs_a_prefix():
    with pytest.raises(ValueError):
        PrefixedView(MemoryStore(), b"")


def test_closed_store_refuses_use(store):
    store.close()
    store.close()  # idempotent
    with pytest.raises((StorageError, RuntimeError)):
        store.get(b"a")
    with pytest.raises(StorageError):
        store.snapshot()


def test_prefix_upper_bound():
    assert prefix_upper_bound(b"a") == b"b"
    assert prefix_upper_bound(b"a\xff") == b"b"
    assert prefix_upper_bound(b"\xff\xff") is None
    assert prefix_upper_bound(b"") is None
    assert scan_range(b"b", b"a", reverse=True) is None


def test_leveldb_persists_across_reopen(tmp_path):
    s = LevelDBStore(tmp_path / "db")
    put_all(s, [(b"k", b"v")])
    s.close()
    s = LevelDBStore(tmp_path / "db")
    assert s.get(b"k") == b"v"
    s.close()


def _table_bytes(path) -> int:
    return sum(f.stat().st_size for f in path.glob("*.ldb"))


def test_leveldb_compression_option_and_either_reads_the_other(tmp_path):
    """`compression=None` (the node's default) writes tables as they are; "snappy" shrinks
    compressible ones; a store written with one setting opens and reads with the other."""
    values = [(b"k%05d" % i, b"compressible " * 80) for i in range(4000)]  # ~4 MB
    for name, compression in (("plain", None), ("snappy", "snappy")):
        s = LevelDBStore(tmp_path / name, compression=compression, write_buffer_bytes=1 << 20)
        for i in range(0, len(values), 100):
            put_all(s, values[i:i + 100])
        # Full memtables are written out in the background, and close does not wait for
        # one that is only scheduled (the test saw 2.1 MB of tables one run in three): a
        # compaction writes out the memtable and waits for it.
        s._db.compact_range()
        s.close()
    plain, snappy = _table_bytes(tmp_path / "plain"), _table_bytes(tmp_path / "snappy")
    assert plain > 3_000_000 and snappy * 5 < plain
    for name, other in (("plain", "snappy"), ("snappy", None)):
        s = LevelDBStore(tmp_path / name, compression=other)
        assert all(s.get(k) == v for k, v in values[::97])
        s.close()


def test_leveldb_locked_in_process(tmp_path):
    s = LevelDBStore(tmp_path / "db")
    try:
        with pytest.raises(StoreLockedError, match="data dir is locked by another node"):
            LevelDBStore(tmp_path / "db")
    finally:
        s.close()


def test_leveldb_locked_by_another_process(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, plyvel
                db = plyvel.DB({str(tmp_path / "db")!r}, create_if_missing=True)
                print("ready", flush=True)
                sys.stdin.read()
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout.readline().strip() == b"ready"
        with pytest.raises(StoreLockedError) as info:
            LevelDBStore(tmp_path / "db")
        assert "\n" not in str(info.value)
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)


# -- the two backends agree on random operation sequences ----------------------------

_key = st.binary(min_size=0, max_size=3).map(lambda b: b"k" + b)
_op = st.one_of(
    st.tuples(st.just("put"), _key, st.binary(max_size=4)),
    st.tuples(st.just("delete"), _key, st.none()),
)
_batches = st.lists(st.lists(_op, max_size=8), max_size=6)
_scans = st.lists(
    st.tuples(st.binary(max_size=2), st.one_of(st.none(), _key), st.booleans()), max_size=6
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=_batches, scans=_scans)
def test_memory_and_leveldb_agree(batches, scans):
    model: dict[bytes, bytes] = {}
    with tempfile.TemporaryDirectory() as tmp:
        mem, ldb = MemoryStore(), LevelDBStore(tmp + "/db")
        try:
            for ops in batches:
                batch = WriteBatch()
                for kind, key, value in ops:
                    if kind == "put":
                        batch.put(key, value)
                        model[key] = value
                    else:
                        batch.delete(key)
                        model.pop(key, None)
                mem.write(batch)
                ldb.write(batch)
            for key in model:
                assert mem.get(key) == ldb.get(key) == model[key]
            for prefix, start, reverse in [(b"k", None, False)] + scans:
                expected = sorted(
                    (kv for kv in model.items() if kv[0].startswith(prefix)), reverse=reverse
                )
                if start is not None:
                    expected = [
                        kv for kv in expected if (kv[0] <= start if reverse else kv[0] >= start)
                    ]
                assert list(mem.iterate(prefix, start, reverse)) == expected
                assert list(ldb.iterate(prefix, start, reverse)) == expected
        finally:
            mem.close()
            ldb.close()
