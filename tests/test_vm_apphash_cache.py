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
from commerce_vm.apphash import NODE_PREFIX, InnerTree, update_app_hash
from commerce_vm.proof import EMPTY_APP_HASH
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
    (NODE_PREFIX + bytes((0, 0, 0)), b"\x00" * 31),       # a node record of the wrong size
    (NODE_PREFIX + bytes((4, 0, 0)), b"\x00" * 512),      # a level below the tree
    (NODE_PREFIX + bytes((1, 0, 16)), b"\x00" * 512),     # an index past its level
    (NODE_PREFIX + bytes((1, 0)), b"\x00" * 512),         # a short key
])
def test_loading_refuses_malformed_stored_nodes(key: bytes, record: bytes) -> None:
    with pytest.raises(ValueError, match="malformed app-hash tree node"):
        InnerTree.load(MemoryState([(key, record)]))
