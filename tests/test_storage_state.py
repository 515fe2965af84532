"""StateStore is the commerce VM's StateReader: it must agree with the VM's MemoryState."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.chaindb import ChainDB

state_mod = pytest.importorskip("commerce_vm.state")

_key = st.binary(max_size=3)
_changes = st.lists(st.tuples(_key, st.one_of(st.none(), st.binary(max_size=3))), max_size=30)
_scans = st.lists(
    st.tuples(st.binary(max_size=2), st.one_of(st.none(), _key), st.booleans()), max_size=8
)


@settings(max_examples=60, deadline=None)
@given(genesis=_changes, block=_changes, scans=_scans)
def test_state_store_agrees_with_vm_memory_state(genesis, block, scans):
    db = ChainDB.open(None, "memory")
    vm_state = state_mod.MemoryState()
    db.write_genesis_state(genesis, b"g")
    vm_state.apply(genesis)
    for key, _ in genesis + block:  # fill the read cache before the block changes them
        assert db.state.get(key) == vm_state.get(key)
    db.commit(height=1, block_hash=b"\x01" * 32, block_bytes=b"b", commit_bytes=b"c",
              state_changes=block, app_hash=b"a")
    vm_state.apply(block)
    for key, _ in genesis + block:
        assert db.state.get(key) == vm_state.get(key)
    for prefix, start, reverse in [(b"", None, False)] + scans:
        assert list(db.state.iterate(prefix, start, reverse)) == list(
            vm_state.iterate(prefix, start, reverse)
        )


class _FailingWrites:
    """Wraps a store; `fail` makes its next batch write raise (a full disk, an I/O error)."""

    def __init__(self, store):
        self._store, self.fail = store, False

    def write(self, batch, sync=False):
        if self.fail:
            raise OSError("disk full")
        self._store.write(batch, sync=sync)

    def __getattr__(self, name):
        return getattr(self._store, name)


def test_read_cache_follows_only_written_batches():
    db = ChainDB.open(None, "memory")
    db.write_genesis_state([(b"acct", b"100")], b"g")
    assert db.state.get(b"acct") == b"100" and db.state.get(b"new") is None  # now cached
    failing = _FailingWrites(db.store)
    db.store = failing
    failing.fail = True
    with pytest.raises(OSError):
        db.commit(height=1, block_hash=b"\x01" * 32, block_bytes=b"b", commit_bytes=b"c",
                  state_changes=[(b"acct", b"90"), (b"new", b"10")], app_hash=b"a")
    assert db.state.get(b"acct") == b"100" and db.state.get(b"new") is None
    failing.fail = False
    db.commit(height=1, block_hash=b"\x01" * 32, block_bytes=b"b", commit_bytes=b"c",
              state_changes=[(b"acct", b"90"), (b"new", b"10")], app_hash=b"a")
    assert db.state.get(b"acct") == b"90" and db.state.get(b"new") == b"10"
    db.commit(height=2, block_hash=b"\x02" * 32, block_bytes=b"b", commit_bytes=b"c",
              state_changes=[(b"new", None)], app_hash=b"a")
    assert db.state.get(b"new") is None


def test_read_cache_is_bounded():
    from storage.state import StateStore

    db = ChainDB.open(None, "memory")
    db.write_genesis_state([(bytes([i]), b"v") for i in range(100)], b"g")
    small = StateStore(db.store, cache_entries=10)
    assert all(small.get(bytes([i])) == b"v" for i in range(100))
    assert small.cached_entries <= 10
    small.remember([(bytes([i]), b"w") for i in range(50)])
    assert small.cached_entries <= 10


def test_read_cache_is_bounded_in_bytes_as_values_grow():
    """A fixed set of keys whose values keep growing (the app hash's buckets do, with the
    state): a count of entries never bounds that, the byte budget does."""
    from storage.state import ENTRY_OVERHEAD, StateStore

    db = ChainDB.open(None, "memory")
    keys = [b"~b%03d" % i for i in range(50)]
    db.write_genesis_state([(k, b"") for k in keys], b"g")
    budget = 20_000
    small = StateStore(db.store, cache_entries=1000, cache_bytes=budget)
    for size in range(0, 2000, 100):  # every key rewritten, each time 100 bytes larger
        small.remember([(k, b"x" * size) for k in keys])
        held = sum(len(k) + len(v or b"") + ENTRY_OVERHEAD
                   for gen in (small._young, small._old) for k, v in gen.items())
        assert held <= budget + 2 * (2000 + ENTRY_OVERHEAD), size  # two halves + one entry
        assert small.cached_bytes <= budget // 2 + 2000 + ENTRY_OVERHEAD
    # rewriting a key replaces its bytes in the count instead of adding them again
    same = StateStore(db.store, cache_entries=1000, cache_bytes=10**9)
    for _ in range(100):
        same.remember([(keys[0], b"y" * 500)])
    assert same.cached_bytes == len(keys[0]) + 500 + ENTRY_OVERHEAD
    same.remember([(keys[0], None)])
    assert same.cached_bytes == len(keys[0]) + ENTRY_OVERHEAD
    assert same.get(keys[1]) == b"" and same.cached_bytes == 2 * (len(keys[0]) + ENTRY_OVERHEAD)


def test_read_cache_never_answers_an_older_value_than_the_store():
    """Writes and reads interleaved across many generation turns of a tiny cache: every
    read answers what the store holds (a stale entry left in the old generation is caught)."""
    import random

    from storage.kv import WriteBatch
    from storage.layout import NS_STATE
    from storage.state import StateStore

    db = ChainDB.open(None, "memory")
    db.write_genesis_state([(bytes([i]), b"0") for i in range(30)], b"g")
    small = StateStore(db.store, cache_entries=8, cache_bytes=800)  # bytes turn it first
    rng = random.Random(7)
    for step in range(2000):
        key = bytes([rng.randrange(40)])
        if rng.random() < 0.4:
            value = None if rng.random() < 0.2 else b"%d" % step
            batch = WriteBatch()
            if value is None:
                batch.delete(NS_STATE + key)
            else:
                batch.put(NS_STATE + key, value)
            db.store.write(batch)
            small.remember([(key, value)])
        assert small.get(key) == db.store.get(NS_STATE + key)
        assert small.cached_entries <= 8


def test_uncached_prefixes_are_read_from_the_store_every_time():
    """The app hash's inner nodes live in the VM's own TreeCache: the read cache leaves
    them out (reads and commits alike) and so can never answer an old one."""
    db = ChainDB.open(None, "memory", uncached_state_prefixes=(b"~n",))
    db.write_genesis_state([(b"~n\x00\x00\x00", b"root-1"), (b"acct", b"1")], b"g")
    assert db.state.get(b"~n\x00\x00\x00") == b"root-1" and db.state.get(b"acct") == b"1"
    db.commit(height=1, block_hash=b"\x01" * 32, block_bytes=b"b", commit_bytes=b"c",
              state_changes=[(b"~n\x00\x00\x00", b"root-2"), (b"acct", b"2")], app_hash=b"a")
    assert db.state.get(b"~n\x00\x00\x00") == b"root-2" and db.state.get(b"acct") == b"2"
    cached = set(db.state._young) | set(db.state._old)
    assert cached == {b"acct"}
