"""ChainDB: one-batch commits, reopen, block/state stores and the tx index."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.chaindb import ChainDB
from storage.errors import StorageError, StoreCorruptionError
from storage.kv import MemoryStore, WriteBatch
from storage.layout import META_BLOCK_HEIGHT, META_STATE, NS_META, u32, u64
from storage.txindex import SUB_BLOCK, TxIndex, TxIndexEntry, TxRef

ALICE, BOB, CAROL = b"\xaa" * 20, b"\xbb" * 20, b"\xcc" * 20


@pytest.fixture(params=["memory", "leveldb"])
def db(request, tmp_path):
    d = ChainDB.open(tmp_path / "chain", request.param)
    yield d
    d.close()


def tx_hash(height: int, index: int) -> bytes:
    return height.to_bytes(8, "big") + index.to_bytes(24, "big")


def commit(db, height, changes=(), entries=(), **kw):
    db.commit(
        height=height,
        block_hash=bytes([height % 256]) * 32,
        block_bytes=b"block-%d" % height,
        commit_bytes=b"commit-%d" % height,
        state_changes=list(changes),
        app_hash=b"app-%d" % height,
        tx_entries=list(entries),
        **kw,
    )


def test_empty_db(db):
    assert db.last_committed_height() is None
    assert db.state_meta() is None
    assert db.blocks.latest_height() is None
    assert db.blocks.get_block(1) is None
    assert db.txs.by_hash(b"\x00" * 32) is None


def test_commit_writes_block_commit_state_and_meta(db):
    db.write_genesis_state([(b"acct/a", b"100")], b"genesis", height=0)
    assert db.state_meta().height == 0 and db.state_meta().app_hash == b"genesis"
    commit(db, 1, [(b"acct/a", b"90"), (b"acct/b", b"10")])
    assert db.last_committed_height() == 1
    assert db.blocks.latest_height() == 1
    assert db.blocks.get_block(1) == b"block-1"
    assert db.blocks.get_commit(1) == b"commit-1"
    assert db.blocks.height_of(b"\x01" * 32) == 1
    assert db.blocks.get_block_by_hash(b"\x01" * 32) == (1, b"block-1")
    assert db.blocks.get_commit_by_hash(b"\x01" * 32) == b"commit-1"
    assert db.blocks.get_block_by_hash(b"\x09" * 32) is None
    assert db.state.get(b"acct/a") == b"90"
    assert list(db.state.iterate(b"acct/")) == [(b"acct/a", b"90"), (b"acct/b", b"10")]
    assert db.state_meta().height == 1 and db.state_meta().app_hash == b"app-1"
    commit(db, 2, [(b"acct/b", None)])
    assert db.state.get(b"acct/b") is None
    assert list(db.state.iterate(b"acct/", start=b"acct/z", reverse=True)) == [(b"acct/a", b"90")]


def test_snapshot_is_one_committed_height(db):
    db.write_genesis_state([(b"acct/a", b"100")], b"genesis", height=0)
    commit(db, 1, [(b"acct/a", b"90"), (b"acct/b", b"10")],
           [TxIndexEntry(tx_hash(1, 0), 0, 0, 7, (ALICE,))])
    with db.snapshot() as snap:
        commit(db, 2, [(b"acct/a", b"80"), (b"acct/c", b"1")],
               [TxIndexEntry(tx_hash(2, 0), 0, 0, 7, (ALICE,))])
        assert snap.last_committed_height() == 1 and snap.state_meta().app_hash == b"app-1"
        assert snap.state.get(b"acct/a") == b"90" and snap.state.get(b"acct/c") is None
        assert [k for k, _ in snap.state.iterate(b"acct/")] == [b"acct/a", b"acct/b"]
        assert snap.blocks.get_block(2) is None and snap.blocks.get_block(1) == b"block-1"
        assert snap.txs.by_hash(tx_hash(2, 0)) is None
        assert [r.tx_hash for r in snap.txs.by_account(ALICE, 10).items] == [tx_hash(1, 0)]
    # the live state (and its cache) moved on; the snapshot never filled that cache
    assert db.state.get(b"acct/a") == b"80"
    with db.snapshot() as snap:
        assert snap.last_committed_height() == 2 and snap.state.get(b"acct/c") == b"1"


def test_state_view_sees_only_state_namespace(db):
    commit(db, 1, [(b"x", b"1")])
    keys = [k for k, _ in db.state.iterate(b"")]
    assert keys == [b"x"]  # no block, meta or index keys leak into the VM's view


def test_commit_must_be_the_next_height(db):
    db.write_genesis_state([], b"g", height=4)
    with pytest.raises(StorageError, match="next height is 5"):
        commit(db, 6)
    commit(db, 5)
    with pytest.raises(StorageError, match="next height is 6"):
        commit(db, 5)
    assert db.blocks.get_block(6) is None


def test_genesis_only_into_empty_db(db):
    commit(db, 1)
    with pytest.raises(StorageError):
        db.write_genesis_state([], b"g")


def test_bad_heights_and_hashes_rejected(db):
    with pytest.raises(ValueError):
        commit(db, -1)
    with pytest.raises(ValueError):
        db.commit(
            height=1, block_hash=b"", block_bytes=b"", commit_bytes=b"",
            state_changes=[], app_hash=b"",
        )
    assert db.last_committed_height() is None


def test_failed_commit_writes_nothing(db):
    bad = TxIndexEntry(b"\x01" * 32, 0, 0, 1, [b"short"])
    with pytest.raises(ValueError):
        commit(db, 1, [(b"acct/a", b"1")], [bad])
    assert db.state.get(b"acct/a") is None
    assert db.blocks.get_block(1) is None
    assert db.last_committed_height() is None
    commit(db, 1)  # and the height is still free


def test_extra_meta_goes_into_the_same_batch(db):
    commit(db, 1, meta=[(b"genesis_hash", b"\x42" * 32)])
    assert db.get_meta(b"genesis_hash") == b"\x42" * 32
    with pytest.raises(ValueError):
        db.put_meta(WriteBatch(), b"state", b"x")


def test_reopen_resumes(tmp_path):
    path = tmp_path / "chain"
    with ChainDB.open(path) as db:
        db.write_genesis_state([(b"k", b"0")], b"g")
        for h in range(1, 6):
            commit(db, h, [(b"k", b"%d" % h)])
    with ChainDB.open(path) as db:
        assert db.last_committed_height() == 5
        assert db.state.get(b"k") == b"5"
        assert db.state_meta().app_hash == b"app-5"
        commit(db, 6)
        assert db.last_committed_height() == 6


def test_iter_blocks_range(db):
    for h in range(1, 8):
        commit(db, h)
    got = list(db.blocks.iter_blocks(3, 5))
    assert got == [(h, b"block-%d" % h, b"commit-%d" % h) for h in (3, 4, 5)]
    assert [h for h, _, _ in db.blocks.iter_blocks(6)] == [6, 7]
    assert list(db.blocks.iter_blocks(8)) == []


def test_open_refuses_blocks_without_state():
    store = MemoryStore()
    db = ChainDB(store)
    commit(db, 1)
    commit(db, 2)
    # Simulate what a non-atomic writer could leave: block 3 recorded, state still at 2.
    batch = WriteBatch()
    db.blocks.put(batch, 3, b"\x03" * 32, b"b3", b"c3")
    store.write(batch)
    with pytest.raises(StoreCorruptionError, match="blocks end at height 3 but state is at 2"):
        ChainDB(store)


def test_open_refuses_block_without_state_meta():
    store = MemoryStore()
    batch = WriteBatch()
    batch.put(NS_META + META_BLOCK_HEIGHT, (1).to_bytes(8, "big"))
    store.write(batch)
    with pytest.raises(StoreCorruptionError):
        ChainDB(store)


def test_corrupt_meta_record_is_a_typed_error():
    store = MemoryStore()
    batch = WriteBatch()
    batch.put(NS_META + META_BLOCK_HEIGHT, b"\x01")
    batch.put(NS_META + META_STATE, b"\x00")
    store.write(batch)
    with pytest.raises(StoreCorruptionError):
        ChainDB(store)


def test_unknown_backend():
    with pytest.raises(StorageError):
        ChainDB.open(None, "rocksdb")
    with pytest.raises(StorageError):
        ChainDB.open(None, "leveldb")


# -- tx index ---------------------------------------------------------------------------


def entry(height, index, code=0, tx_type="transfer", addresses=(ALICE,)):
    return TxIndexEntry(tx_hash(height, index), index, code, tx_type, list(addresses))


def test_tx_by_hash_and_height(db):
    commit(db, 1, entries=[entry(1, 0), entry(1, 1, code=7)])
    loc = db.txs.by_hash(tx_hash(1, 1))
    assert (loc.height, loc.index, loc.code) == (1, 1, 7)
    assert db.txs.by_height(1) == [TxRef(1, 0, tx_hash(1, 0)), TxRef(1, 1, tx_hash(1, 1))]
    assert db.txs.by_height(2) == []


def test_a_blocks_tx_list_is_one_record_and_a_store_with_a_key_per_tx_still_reads():
    store = MemoryStore()
    index = TxIndex(store)
    batch = WriteBatch()
    index.index(batch, 3, [entry(3, i) for i in range(50)])
    assert [k for k, _ in batch.ops if k.startswith(SUB_BLOCK)] == [SUB_BLOCK + u64(3)]
    store.write(batch)
    assert index.by_height(3) == [TxRef(3, i, tx_hash(3, i)) for i in range(50)]
    # the layout before: one key per tx
    old = WriteBatch()
    for i in range(3):
        old.put(SUB_BLOCK + u64(4) + u32(i), tx_hash(4, i))
    store.write(old)
    assert index.by_height(4) == [TxRef(4, i, tx_hash(4, i)) for i in range(3)]
    cut = WriteBatch()
    cut.put(SUB_BLOCK + u64(5), u32(0) + bytes([32]) + b"\x01" * 31)
    store.write(cut)
    with pytest.raises(StoreCorruptionError):
        index.by_height(5)


def test_tx_by_account_pages_newest_first(db):
    # Alice is in every tx; Bob in odd indexes; sender listed twice is indexed once.
    for h in range(1, 6):
        entries = [
            entry(h, i, addresses=[ALICE, ALICE] + ([BOB] if i % 2 else [])) for i in range(3)
        ]
        commit(db, h, entries=entries)
    all_alice = [(h, i) for h in range(5, 0, -1) for i in range(2, -1, -1)]
    seen, cursor = [], None
    while True:
        page = db.txs.by_account(ALICE, 4, cursor)
        assert len(page.items) <= 4
        seen += [(r.height, r.index) for r in page.items]
        assert all(r.tx_hash == tx_hash(r.height, r.index) for r in page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == all_alice
    bob = db.txs.by_account(BOB, 100)
    assert [(r.height, r.index) for r in bob.items] == [(h, 1) for h in range(5, 0, -1)]
    assert bob.next_cursor is None
    assert db.txs.by_account(CAROL, 10).items == []


def test_tx_page_exactly_full_has_no_cursor(db):
    commit(db, 1, entries=[entry(1, i) for i in range(3)])
    page = db.txs.by_account(ALICE, 3)
    assert len(page.items) == 3 and page.next_cursor is None


def test_tx_by_type_int_and_str(db):
    commit(db, 1, entries=[entry(1, 0, tx_type="buy"), entry(1, 1, tx_type="buy_x"),
                           entry(1, 2, tx_type=3)])
    assert [r.index for r in db.txs.by_type("buy", 10).items] == [0]
    assert [r.index for r in db.txs.by_type("buy_x", 10).items] == [1]
    assert [r.index for r in db.txs.by_type(3, 10).items] == [2]
    assert db.txs.by_type(4, 10).items == []


@pytest.mark.parametrize(
    "bad",
    [
        TxIndexEntry(b"", 0, 0, 1, []),
        TxIndexEntry(b"\x01" * 32, -1, 0, 1, []),
        TxIndexEntry(b"\x01" * 32, 0, -5, 1, []),
        TxIndexEntry(b"\x01" * 32, 0, 0, 70000, []),
        TxIndexEntry(b"\x01" * 32, 0, 0, 1.5, []),
        TxIndexEntry(b"\x01" * 32, 0, 0, "", []),
        TxIndexEntry(b"\x01" * 32, 0, 0, 1, [b"\x00" * 32]),
    ],
)
def test_bad_index_entries_rejected(bad):
    with pytest.raises(ValueError):
        TxIndex(MemoryStore()).index(WriteBatch(), 1, [bad])


@pytest.mark.parametrize("cursor", [(1,), "1:0", (1, -1), (-1, 0), ("a", 0)])
def test_bad_cursors_and_limits_rejected(cursor):
    txs = TxIndex(MemoryStore())
    with pytest.raises(ValueError):
        txs.by_account(ALICE, 10, cursor)
    with pytest.raises(ValueError):
        txs.by_account(ALICE, 0)
    with pytest.raises(ValueError):
        txs.by_account(b"short", 10)


@settings(max_examples=40, deadline=None)
@given(
    blocks=st.lists(
        st.lists(st.sets(st.sampled_from([ALICE, BOB, CAROL]), max_size=3), max_size=5),
        min_size=1,
        max_size=6,
    ),
    limit=st.integers(1, 7),
)
def test_account_pagination_matches_a_model(blocks, limit):
    db = ChainDB.open(None, "memory")
    expected: dict[bytes, list[tuple[int, int]]] = {ALICE: [], BOB: [], CAROL: []}
    for h, txs in enumerate(blocks, start=1):
        entries = []
        for i, addresses in enumerate(txs):
            entries.append(entry(h, i, addresses=sorted(addresses)))
            for a in addresses:
                expected[a].append((h, i))
        commit(db, h, entries=entries)
    for address, positions in expected.items():
        seen, cursor, pages = [], None, 0
        while True:
            page = db.txs.by_account(address, limit, cursor)
            seen += [(r.height, r.index) for r in page.items]
            pages += 1
            cursor = page.next_cursor
            if cursor is None:
                break
        assert seen == sorted(positions, reverse=True)
        assert pages == max(1, -(-len(positions) // limit))
