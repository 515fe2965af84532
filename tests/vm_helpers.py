"""Shared helpers for the commerce_vm tests: deterministic keys, params and a tiny chain."""

from __future__ import annotations

from typing import Any

from commerce_vm import (
    BlockContext,
    BlockExecution,
    GenesisParams,
    MemoryState,
    Overlay,
    StateReader,
    decode_tx,
    execute_block,
    genesis_state,
    sign_tx,
)
from commerce_vm import txtypes as T
from commerce_vm.ledger import ACCOUNT, ESCROW, ORDER, POOL, unpack
from commerce_vm.params import fees_by_name
from core.address import address_from_pubkey
from core.keys import PrivateKey

CHAIN_ID = "chainmerce-test"


def key(name: str) -> PrivateKey:
    """A deterministic key per name (seed = name padded), so vectors are reproducible."""
    return PrivateKey(name.encode().ljust(32, b"\x00")[:32])


def addr(k: PrivateKey) -> bytes:
    return address_from_pubkey(k.public_key)


NAMES = ("alice", "bob", "carol", "dave", "merchant", "merchant2", "carrier", "arbiter",
         "referrer", "val1", "val2", "val3", "val4", "stranger")
KEYS = {name: key(name) for name in NAMES}
VALIDATOR_NAMES = ("val1", "val2", "val3", "val4")


def default_params(**overrides: Any) -> GenesisParams:
    base: dict[str, Any] = dict(
        chain_id=CHAIN_ID,
        validators=tuple(sorted((KEYS[n].public_key, 10) for n in VALIDATOR_NAMES)),
        initial_balances=tuple(sorted(
            (addr(KEYS[n]), 1_000_000) for n in NAMES if n not in ("stranger",)
        )),
        arbiters=(addr(KEYS["arbiter"]),),
        min_fees=fees_by_name({}, default=10),
        rewards_pool=100_000,
        purchase_reward_bps=100,
        referral_reward_bps=50,
        review_reward=25,
        default_ship_within=5,
        max_ship_within=50,
        default_confirm_within=5,
        max_confirm_within=50,
        max_checkpoints_per_order=4,
    )
    base.update(overrides)
    return GenesisParams(**base)


class Chain:
    """A MemoryState plus auto-nonces: sign txs by name, execute and commit blocks."""

    def __init__(self, params: GenesisParams | None = None):
        self.params = params or default_params()
        self.state: MemoryState = genesis_state(self.params)
        self.height = 0
        self.nonces: dict[str, int] = {}
        self.last: BlockExecution | None = None

    def tx(self, signer: str, tx_type: int, body: list[Any], *, fee: int | None = None,
           nonce: int | None = None) -> bytes:
        if nonce is None:
            nonce = self.nonces.get(signer, 0)
            self.nonces[signer] = nonce + 1
        if fee is None:
            fee = self.params.min_fees[tx_type]
        return sign_tx(KEYS[signer], self.params.chain_id, tx_type, nonce, fee, body)

    def context(self, height: int | None = None, misbehaving: tuple[bytes, ...] = ()) -> BlockContext:
        h = self.height + 1 if height is None else height
        return BlockContext(self.params.chain_id, h, 1_700_000_000_000 + h * 1000, b"\x00" * 20, misbehaving)

    def block(self, raws: list[bytes], *, drop_rejected: bool = True,
              misbehaving: tuple[bytes, ...] = ()) -> BlockExecution:
        txs = [decode_tx(raw, self.params.chain_id) for raw in raws]
        result = execute_block(self.state, self.params, self.context(misbehaving=misbehaving), txs,
                               drop_rejected=drop_rejected)
        self.state.apply(result.changes)
        self.height += 1
        self.last = result
        return result

    def run(self, signer: str, tx_type: int, body: list[Any], **kw: Any):
        """One tx in its own block; returns its TxResult."""
        return self.block([self.tx(signer, tx_type, body, **kw)]).results[0]

    def empty_blocks(self, n: int) -> None:
        for _ in range(n):
            self.block([])

    def balance(self, name_or_addr: str | bytes) -> int:
        a = addr(KEYS[name_or_addr]) if isinstance(name_or_addr, str) else name_or_addr
        value = self.state.get(ACCOUNT + a)
        return 0 if value is None else unpack(value)[0]


def total_supply(state: MemoryState) -> int:
    total = sum(unpack(v)[0] for _, v in state.iterate(ACCOUNT))
    for k in (POOL, ESCROW):
        value = state.get(k)
        total += 0 if value is None else unpack(value)
    return total


def open_escrow_sum(state: MemoryState) -> int:
    from commerce_vm.ledger import Order, load

    return sum(load(Order, v).escrow for _, v in state.iterate(ORDER)
               if load(Order, v).status in T.OPEN_STATUSES)


def overlay_with(base: StateReader, writes: list[tuple[bytes, bytes | None]]) -> Overlay:
    """An Overlay of `base` holding `writes` (a None value deletes), in order."""
    overlay = Overlay(base)
    for key, value in writes:
        if value is None:
            overlay.delete(key)
        else:
            overlay.put(key, value)
    return overlay
