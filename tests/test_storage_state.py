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
    db.commit(height=1, block_hash=b"\x01" * 32, block_bytes=b"b", commit_bytes=b"c",
              state_changes=block, app_hash=b"a")
    vm_state.apply(block)
    for key, _ in genesis + block:
        assert db.state.get(key) == vm_state.get(key)
    for prefix, start, reverse in [(b"", None, False)] + scans:
        assert list(db.state.iterate(prefix, start, reverse)) == list(
            vm_state.iterate(prefix, start, reverse)
        )
