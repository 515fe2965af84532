"""Genesis: the initial state the node writes to storage before block 1."""

from __future__ import annotations

from core.encoding import encode

from .apphash import EmptyState, update_app_hash
from .ledger import ACCOUNT, PARAMS, POOL, VALIDATOR
from .params import GenesisParams
from .state import Change, MemoryState, Overlay


def genesis_changes(params: GenesisParams) -> tuple[list[Change], bytes]:
    """(sorted changes to write into an empty store, app hash of the genesis state)."""
    state = Overlay(EmptyState())
    for address, amount in params.initial_balances:
        if amount:
            state.put(ACCOUNT + address, encode([amount, 0]))
    for pubkey, power in params.validators:
        state.put(VALIDATOR + pubkey, encode([power]))
    state.put(POOL, encode(params.rewards_pool))
    state.put(PARAMS, encode(params.to_list()))
    app_hash = update_app_hash(state, list(state.writes.items()))
    return [(k, v) for k, v in state.changes() if v is not None], app_hash


def genesis_state(params: GenesisParams) -> MemoryState:
    changes, _ = genesis_changes(params)
    state = MemoryState()
    state.apply(changes)
    return state
