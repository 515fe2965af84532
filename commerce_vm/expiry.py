"""End-of-block deadlines, from the index keyed by height (cost ~ what expires).

A deadline height is inclusive: the merchant may ship in block ship_by, the buyer may
confirm or dispute in block confirm_by. At the end of that block the order expires:
PAID -> REFUNDED automatically (inventory restored); SHIPPED -> COMPLETED automatically
(escrow released, purchase rewards paid). Handlers remove an order's expiry key whenever it
leaves the status the deadline guards, so every due key is live, and the index is always
`expected_expiry_index` of the orders: the app hash leaves it out for that reason.
"""

from __future__ import annotations

from . import txtypes as T
from .commerce import refund_to_buyer, release_to_merchant
from .context import BlockContext, Event
from .ledger import (
    EXPIRE_CONFIRM_BY,
    EXPIRE_SHIP_BY,
    EXPIRY,
    ORDER,
    Ledger,
    Order,
    expiry_key,
    expiry_value,
    load,
    unpack,
)
from .params import GenesisParams
from .state import StateReader


def end_block(lg: Ledger, params: GenesisParams, ctx: BlockContext) -> list[Event]:
    due = []
    for key, value in lg.state.iterate(EXPIRY):
        if int.from_bytes(key[len(EXPIRY):len(EXPIRY) + 8], "big") > ctx.height:
            break
        due.append((key, int.from_bytes(key[len(EXPIRY) + 8:], "big"), unpack(value)[0]))
    events: list[Event] = []
    for key, order_id, kind in due:
        lg.state.delete(key)
        order = lg.order(order_id)
        if order is None:
            continue
        if kind == EXPIRE_SHIP_BY and order.status == T.PAID:
            events += refund_to_buyer(lg, order, T.REFUNDED, ctx.height, "ship_by_expired")
        elif kind == EXPIRE_CONFIRM_BY and order.status == T.SHIPPED:
            events += release_to_merchant(lg, params, order, ctx.height, "confirm_by_expired")
    return events


def expected_expiry_index(state: StateReader) -> dict[bytes, bytes]:
    """The expiry index as a function of the orders in `state`: the ship_by entry of each
    PAID order, the confirm_by entry of each SHIPPED one. After every block the stored
    index equals it (the golden vectors check this after each block; `doctor` checks a
    node's store), which is what lets the app hash commit to the orders alone."""
    entries: dict[bytes, bytes] = {}
    for _, value in state.iterate(ORDER):
        order = load(Order, value)
        if order.status == T.PAID:
            entries[expiry_key(order.ship_by, order.id)] = expiry_value(EXPIRE_SHIP_BY)
        elif order.status == T.SHIPPED:
            entries[expiry_key(order.confirm_by, order.id)] = expiry_value(EXPIRE_CONFIRM_BY)
    return entries
