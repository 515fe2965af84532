"""The app-hash tree kept in memory between blocks (commerce_vm.apphash.TreeCache).

The cache may change how fast a root is computed, never which root or which stored nodes:
every block folded with a shared cache must give the root, and the state changes, of the
same block folded from the stored tree alone, and both must equal a from-scratch
recomputation. Blocks run on forks of one base (two proposals of a height) and on states
the cache has never seen, so a tree is only ever used for the state it belongs to.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from commerce_vm import MemoryState, TreeCache, app_hash_of, recompute_app_hash
from commerce_vm.apphash import (
    BUCKET_PREFIX,
    NODE_PREFIX,
    STORED_LEVELS,
    InnerTree,
    _edit_bucket,
    prove,
    update_app_hash,
)
from commerce_vm.proof import EMPTY_APP_HASH, verify_state_proof
from tests.vm_helpers import overlay_with

# a small key universe so blocks overwrite and delete keys they or earlier blocks wrote
KEYS = [b"k%03d" % i for i in range(300)]
writes = st.lists(st.tuples(st.sampled_from(KEYS),
                            st.one_of(st.none(), st.binary(min_size=1, max_size=40))),
                  min_size=0, max_size=60)


def fold(base: MemoryState, block: list[tuple[bytes, bytes | None]],
         trees: TreeCache | None) -> tuple[bytes, list[tuple[bytes, bytes | None]]]:
    overlay = overlay_with(base, block)
    root = update_app_hash(overlay, list(overlay.writes.items()), trees)
    return root, overlay.changes()


def committed(base: MemoryState, changes: list[tuple[bytes, bytes | None]]) -> MemoryState:
    state = base.copy()
    state.apply(changes)
    return state


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(writes, writes, st.booleans()), min_size=1, max_size=8))
def test_cached_tree_gives_the_same_roots_and_changes(heights) -> None:
    cached_state = plain_state = MemoryState()
    trees = TreeCache(limit=3)
    for block_a, block_b, commit_b in heights:
        # two proposals of the same height fold on the same base; either one commits
        root_a, changes_a = fold(cached_state, block_a, trees)
        root_b, changes_b = fold(cached_state, block_b, trees)
        assert (root_a, changes_a) == fold(plain_state, block_a, None)
        assert (root_b, changes_b) == fold(plain_state, block_b, None)
        changes = changes_b if commit_b else changes_a
        cached_state = committed(cached_state, changes)
        plain_state = committed(plain_state, changes)
        assert app_hash_of(cached_state) == (root_b if commit_b else root_a)
        assert recompute_app_hash(cached_state) == app_hash_of(cached_state)
        assert len(trees) <= 3


def test_a_cached_tree_is_used_only_for_its_own_state() -> None:
    """A tree filed under another root is never used: a state the cache has not seen loads
    its own tree from its stored nodes."""
    trees = TreeCache()
    first = committed(MemoryState(), fold(MemoryState(), [(b"a", b"1")], trees)[1])
    second = committed(first, fold(first, [(b"b", b"2")], trees)[1])
    other = committed(MemoryState(), fold(MemoryState(), [(b"z", b"9")], None)[1])
    root, changes = fold(other, [(b"c", b"3")], trees)
    assert (root, changes) == fold(other, [(b"c", b"3")], None)
    assert recompute_app_hash(committed(other, changes)) == root
    assert app_hash_of(second) != app_hash_of(other)


def test_a_wrong_tree_under_a_states_root_would_change_the_root() -> None:
    """What the keying protects: the update trusts the tree it is given for every node the
    block does not touch, so a tree of another state filed under this state's root yields
    a root no honest node computes (the test above shows that never happens)."""
    state = committed(MemoryState(), fold(MemoryState(), [(b"a", b"1"), (b"q", b"7")], None)[1])
    trees = TreeCache()
    trees.add(app_hash_of(state), InnerTree.load(MemoryState()))  # the empty state's tree
    assert fold(state, [(b"b", b"2")], trees)[0] != fold(state, [(b"b", b"2")], None)[0]


def test_the_cache_keeps_at_most_its_limit_most_recent_first_out() -> None:
    trees = TreeCache(limit=2)
    state = MemoryState()
    roots = []
    for i in range(4):
        root, changes = fold(state, [(b"key%d" % i, b"v")], trees)
        state = committed(state, changes)
        roots.append(root)
    assert len(trees) == 2
    assert set(trees._trees) == set(roots[-2:])


def test_the_empty_state_tree_has_the_empty_root() -> None:
    assert InnerTree.load(MemoryState()).root == EMPTY_APP_HASH


@pytest.mark.parametrize("key, record", [
    (BUCKET_PREFIX + bytes((0, 0)), b""),                 # an empty bucket is never stored
    (BUCKET_PREFIX + bytes((0, 0)), b"\x00" * 63),        # not a whole number of pairs
    (BUCKET_PREFIX + bytes((0,)), b"\x00" * 64),          # a short key
    (BUCKET_PREFIX + bytes((0, 0, 0)), b"\x00" * 64),     # a long key
])
def test_loading_refuses_malformed_buckets(key: bytes, record: bytes) -> None:
    with pytest.raises(ValueError, match="malformed app-hash bucket"):
        InnerTree.load(MemoryState([(key, record)]))


def some_state() -> MemoryState:
    block = [(b"k%03d" % i, b"v%d" % i) for i in range(40)]
    return committed(MemoryState(), fold(MemoryState(), block, None)[1])


def test_loading_refuses_buckets_that_do_not_match_the_stored_root() -> None:
    state = some_state()
    assert InnerTree.load(state).root == app_hash_of(state)
    key, record = next(state.iterate(BUCKET_PREFIX))
    state.apply([(key, record[:-1] + bytes([record[-1] ^ 1]))])  # one value hash flipped
    with pytest.raises(ValueError, match="do not match its stored root"):
        InnerTree.load(state)


def test_level_3_nodes_are_never_stored_and_stale_ones_are_ignored() -> None:
    """Level 3 is derived from the buckets: no block writes it, and records of it left by
    the older layout change neither a load nor the next root."""
    state = some_state()
    assert all(key[2] < STORED_LEVELS for key, _ in state.iterate(NODE_PREFIX))
    stale = state.copy()
    stale.apply([(NODE_PREFIX + bytes((3, 0, i)), b"\x07" * 512) for i in range(16)])
    assert InnerTree.load(stale).levels == InnerTree.load(state).levels
    block = [(b"new", b"1"), (b"k001", None)]
    assert fold(stale, block, None)[0] == fold(state, block, None)[0]


hashes = st.binary(min_size=32, max_size=32)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([bytes([i]) * 32 for i in range(0, 256, 17)])
                          | hashes, st.none() | hashes), max_size=40))
def test_a_bucket_edit_keeps_its_pairs_sorted_unique_and_current(updates) -> None:
    """The bucket record after any run of sets and removals is the sorted pairs of the last
    value set per key hash: what the root, proofs and verify_state_proof all assume."""
    record, model = b"", {}
    for khash, vhash in updates:
        record = _edit_bucket(record, khash, vhash)
        if vhash is None:
            model.pop(khash, None)
        else:
            model[khash] = vhash
        assert record == b"".join(k + v for k, v in sorted(model.items()))


def test_empty_values_and_fresh_buckets_prove_against_the_updated_root() -> None:
    """b"" values and buckets that were empty: the root the update computes is the one
    proofs, which hash everything themselves, verify against."""
    writes = [(b"c/" + bytes([i]) * 12, b"") for i in range(40)] + \
        [(b"a/" + bytes([i]) * 20, bytes([i])) for i in range(40)]
    scratch = overlay_with(MemoryState(), writes)
    root = update_app_hash(scratch, writes)
    state = committed(MemoryState(), scratch.changes())
    for key, value in writes[:3] + writes[40:43]:
        proof = prove(state, key)
        assert verify_state_proof(root, key, value, proof)
        assert not verify_state_proof(root, key, None, proof)
        assert not verify_state_proof(root, key, value + b"x", proof)
