"""The block entry point and the mempool check.

execute_block runs begin-block (validator updates due, evidence), every tx, end-block
(expirations), then folds the writes into the app-hash tree. It works on an Overlay of the
given reader, never mutates it, and returns the sorted changes to commit. The same call
serves the proposer (drop_rejected=True: rejected txs are left out) and validators/commit
(drop_rejected=False: a rejected tx makes the block invalid).

Failure policy (docs/errors.md): stateless or admission failure -> rejected, no effect;
business-rule failure -> included as failed: fee charged, nonce incremented, nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from . import commerce, governance
from . import errors as E
from . import txtypes as T
from .apphash import TreeCache, update_app_hash
from .context import BlockContext, BlockExecution, Event, TxResult
from .expiry import end_block
from .ledger import Ledger
from .params import GenesisParams
from .state import Overlay, StateReader
from .tx import Tx, check_stateless, verify_tx_signature

Handler = Callable[[Ledger, BlockContext, GenesisParams, Tx], list[Event]]
# Runs a tx's handler after its fee and nonce are taken (see run_handler); reuse.py has one
# that applies an earlier run's recorded writes where they are still valid.
HandlerRunner = Callable[[Overlay, GenesisParams, BlockContext, Tx], TxResult]

HANDLERS: dict[int, Handler] = {
    T.TRANSFER: commerce.transfer,
    T.LIST: commerce.list_item,
    T.DELIST: commerce.delist,
    T.BUY: commerce.buy,
    T.SHIP: commerce.ship,
    T.TRACK: commerce.track,
    T.CONFIRM: commerce.confirm,
    T.CANCEL: commerce.cancel,
    T.REFUND: commerce.refund,
    T.DISPUTE: commerce.dispute,
    T.RESOLVE: commerce.resolve,
    T.REVIEW: commerce.review,
    T.REWARD: commerce.reward,
    T.VALIDATOR_VOTE: governance.validator_vote,
}
assert set(HANDLERS) == set(T.TYPE_NAMES)


def _result(tx: Tx, code: int, name: str, message: str, included: bool, fee: int,
            events: list[Event] | None = None) -> TxResult:
    return TxResult(tx.hash, code, name, message, included, fee, tx.type, events or [])


def run_handler(block: Overlay, params: GenesisParams, ctx: BlockContext, tx: Tx) -> TxResult:
    """The tx's own effect, on a child of `block`: kept if it succeeds, dropped if it fails
    (the tx is then included as failed, its fee already charged)."""
    return handle_in(Overlay(block), params, ctx, tx)


def handle_in(child: Overlay, params: GenesisParams, ctx: Any, tx: Tx) -> TxResult:
    try:
        events = HANDLERS[tx.type](Ledger(child), ctx, params, tx)
    except E.VMError as err:
        return _result(tx, err.code, err.name, err.message, True, tx.fee)
    child.commit_into_parent()
    return _result(tx, E.OK, "ok", "", True, tx.fee, events)


def _apply(block: Overlay, params: GenesisParams, ctx: BlockContext, tx: Tx,
           run: HandlerRunner = run_handler) -> tuple[TxResult, E.VMError | None]:
    lg = Ledger(block)
    try:
        check_stateless(tx, params)
        if not verify_tx_signature(tx):
            raise E.VMError(E.BAD_SIGNATURE, "signature does not verify")
        account = lg.account(tx.sender_address)
        if tx.nonce != account.nonce:
            raise E.VMError(E.BAD_NONCE, f"nonce {tx.nonce}, expected {account.nonce}")
        if account.balance < tx.fee:
            raise E.VMError(E.CANNOT_PAY_FEE, f"balance {account.balance} cannot pay fee {tx.fee}")
    except E.VMError as err:
        return _result(tx, err.code, err.name, err.message, False, 0), err
    account.balance -= tx.fee
    account.nonce += 1
    lg.put_account(tx.sender_address, account)
    if tx.fee:
        lg.set_pool(lg.pool() + tx.fee)  # fees fund the rewards pool: supply is conserved
    return run(block, params, ctx, tx), None


def apply_tx(state: Overlay, params: GenesisParams, ctx: BlockContext, tx: Tx,
             run: HandlerRunner = run_handler) -> TxResult:
    """Execute one tx into `state` (an Overlay the caller owns). A rejected tx writes nothing."""
    return _apply(state, params, ctx, tx, run)[0]


def check_tx(state: StateReader, params: GenesisParams, ctx: BlockContext, tx: Tx) -> TxResult:
    """Mempool check: the full execution against a view of `state`, which is not modified.

    `included=False` means the tx can never go into a block as it stands; `code != 0` with
    included=True means it would be included as failed (the mempool may still refuse it).
    To check a sender's queued txs in nonce order, use apply_tx on one Overlay instead.
    """
    return _apply(Overlay(state), params, ctx, tx)[0]


def _collect_updates(events: list[Event], updates: dict[bytes, int]) -> None:
    for event in events:
        if event.kind == "validator_update":
            updates[event.attributes["pubkey"]] = event.attributes["power"]


def execute_block(state: StateReader, params: GenesisParams, ctx: BlockContext,
                  txs: Sequence[Tx], *, drop_rejected: bool,
                  run: HandlerRunner = run_handler,
                  trees: TreeCache | None = None) -> BlockExecution:
    """Execute a block on top of `state` (not modified). Raises E.BlockInvalid when
    drop_rejected is False and some tx cannot be included. `run` runs each included tx's
    handler (reuse.Replaying gives the same results from earlier recorded runs); `trees`
    keeps the app-hash tree of recent states in memory between blocks."""
    if ctx.chain_id != params.chain_id:
        raise ValueError(f"block context is for chain {ctx.chain_id!r}, params for {params.chain_id!r}")
    block = Overlay(state)
    lg = Ledger(block)
    block_events = governance.begin_block(lg, ctx)
    results: list[TxResult] = []
    included: list[Tx] = []
    updates: dict[bytes, int] = {}  # pubkey -> final power, in the order changes happened
    _collect_updates(block_events, updates)
    for index, tx in enumerate(txs):
        result, error = _apply(block, params, ctx, tx, run)
        results.append(result)
        if not result.included:
            if not drop_rejected:
                assert error is not None
                raise E.BlockInvalid(index, error)
            continue
        included.append(tx)
        _collect_updates(result.events, updates)
    block_events += end_block(lg, params, ctx)
    app_hash = update_app_hash(block, list(block.writes.items()), trees)
    return BlockExecution(
        results=results,
        included=included,
        changes=block.changes(),
        app_hash=app_hash,
        validator_updates=sorted(updates.items()),
        events=block_events,
    )
