"""Commerce tx handlers and the escrow/reward moves they share.

Each handler checks its rules in order, raising VMError on the first one broken, and only
then writes. It runs in a per-tx overlay, so a failure leaves nothing behind anyway.
Handler signature: (ledger, ctx, params, tx) -> events.
"""

from __future__ import annotations

from . import errors as E
from . import txtypes as T
from .context import BlockContext, Event
from .ledger import (
    EXPIRE_CONFIRM_BY,
    EXPIRE_SHIP_BY,
    LISTING_BY_MERCHANT,
    LISTING_SEQ,
    ORDER_BY_BUYER,
    ORDER_BY_LISTING,
    ORDER_BY_MERCHANT,
    ORDER_SEQ,
    REVIEW,
    REVIEW_BY_LISTING,
    REVIEW_BY_MERCHANT,
    Checkpoint,
    Ledger,
    Listing,
    Order,
    Review,
    be8,
    pack,
)
from .params import BPS_DENOMINATOR, GenesisParams
from .tx import Tx

Events = list[Event]


def status_event(order: Order, reason: str) -> Event:
    return Event("order_status", {
        "order_id": order.id, "status": T.STATUS_NAMES[order.status], "reason": reason,
        "buyer": order.buyer, "merchant": order.merchant,
    })


# --- shared moves ------------------------------------------------------------------------
def pay_from_pool(lg: Ledger, to: bytes, amount: int, reason: str, order_id: int) -> list[Event]:
    """Protocol reward: `amount` capped by the pool balance. Supply is unchanged."""
    pool = lg.pool()
    paid = min(amount, pool)
    if paid <= 0:
        return []
    lg.set_pool(pool - paid)
    lg.credit(to, paid)
    return [Event("reward", {"to": to, "amount": paid, "reason": reason, "order_id": order_id})]


def release_to_merchant(lg: Ledger, params: GenesisParams, order: Order, height: int,
                        reason: str) -> Events:
    """SHIPPED -> COMPLETED: escrow to the merchant, then the protocol's purchase rewards."""
    lg.credit(order.merchant, order.escrow)
    lg.add_escrow(-order.escrow)
    order.escrow = 0
    order.status = T.COMPLETED
    order.closed_height = height
    events = [status_event(order, reason)]
    events += pay_from_pool(lg, order.buyer, order.amount * params.purchase_reward_bps // BPS_DENOMINATOR,
                            "purchase", order.id)
    if order.referrer is not None:
        events += pay_from_pool(lg, order.referrer,
                                order.amount * params.referral_reward_bps // BPS_DENOMINATOR,
                                "referral", order.id)
    lg.put_order(order)
    return events


def refund_to_buyer(lg: Ledger, order: Order, status: int, height: int, reason: str) -> Events:
    """Escrow back to the buyer and the units back to the listing's inventory."""
    lg.credit(order.buyer, order.escrow)
    lg.add_escrow(-order.escrow)
    order.escrow = 0
    order.status = status
    order.closed_height = height
    listing = lg.listing(order.listing_id)
    assert listing is not None  # listings are never deleted
    listing.quantity += order.quantity
    listing.sold -= order.quantity
    lg.put_listing(listing)
    lg.put_order(order)
    return [status_event(order, reason)]


def drop_deadline(lg: Ledger, order: Order) -> None:
    """Remove the pending expiry of an open order (the one matching its status)."""
    if order.status == T.PAID:
        lg.remove_expiry(order.ship_by, order.id)
    elif order.status == T.SHIPPED:
        lg.remove_expiry(order.confirm_by, order.id)


def _order(lg: Ledger, order_id: int) -> Order:
    order = lg.order(order_id)
    if order is None:
        raise E.VMError(E.ORDER_NOT_FOUND, f"order {order_id} does not exist")
    return order


def _as_buyer(order: Order, tx: Tx) -> None:
    if order.buyer != tx.sender_address:
        raise E.VMError(E.NOT_ORDER_BUYER, f"sender is not the buyer of order {order.id}")


def _as_merchant(order: Order, tx: Tx) -> None:
    if order.merchant != tx.sender_address:
        raise E.VMError(E.NOT_ORDER_MERCHANT, f"sender is not the merchant of order {order.id}")


def _status_in(order: Order, allowed: frozenset[int] | tuple[int, ...], action: str) -> None:
    if order.status not in allowed:
        names = "/".join(T.STATUS_NAMES[s] for s in sorted(allowed))
        raise E.VMError(E.WRONG_ORDER_STATUS,
                        f"cannot {action} order {order.id}: it is {T.STATUS_NAMES[order.status]}, needs {names}")


def _owned_active_listing(lg: Ledger, listing_id: int, tx: Tx) -> Listing:
    listing = lg.listing(listing_id)
    if listing is None:
        raise E.VMError(E.LISTING_NOT_FOUND, f"listing {listing_id} does not exist")
    if listing.merchant != tx.sender_address:
        raise E.VMError(E.NOT_LISTING_OWNER, f"listing {listing_id} belongs to another merchant")
    if not listing.active:
        raise E.VMError(E.LISTING_INACTIVE, f"listing {listing_id} was delisted")
    return listing


def _checkpoint_room(order: Order, params: GenesisParams) -> None:
    if order.checkpoints >= params.max_checkpoints_per_order:
        raise E.VMError(E.TOO_MANY_CHECKPOINTS,
                        f"order {order.id} has {order.checkpoints} checkpoints (max {params.max_checkpoints_per_order})")


# --- handlers ----------------------------------------------------------------------------
def transfer(lg: Ledger, ctx: BlockContext, params: GenesisParams, tx: Tx) -> Events:
    to, amount = tx.body
    if to == tx.sender_address:
        raise E.VMError(E.SELF_TRANSFER, "cannot transfer to yourself")
    lg.debit(tx.sender_address, amount)
    lg.credit(to, amount)
    return [Event("transfer", {"from": tx.sender_address, "to": to, "amount": amount})]


def list_item(lg: Ledger, ctx: BlockContext, params: GenesisParams, tx: Tx) -> Events:
    b = tx.body
    ship_within = b.ship_within or params.default_ship_within
    confirm_within = b.confirm_within or params.default_confirm_within
    if b.listing_id == 0:
        listing_id = lg.next_id(LISTING_SEQ)
        listing = Listing(listing_id, tx.sender_address, b.title, b.price, b.quantity, ship_within,
                          confirm_within, b.origin, b.metadata, True, ctx.height, ctx.height, 0)
        lg.index(LISTING_BY_MERCHANT + tx.sender_address + be8(listing_id))
        kind = "listing_created"
    else:
        listing = _owned_active_listing(lg, b.listing_id, tx)
        listing.title, listing.price, listing.quantity = b.title, b.price, b.quantity
        listing.ship_within, listing.confirm_within = ship_within, confirm_within
        listing.origin, listing.metadata, listing.updated_height = b.origin, b.metadata, ctx.height
        kind = "listing_updated"
    lg.put_listing(listing)
    return [Event(kind, {"listing_id": listing.id, "merchant": listing.merchant})]


def delist(lg: Ledger, ctx: BlockContext, params: GenesisParams, tx: Tx) -> Events:
    listing = _owned_active_listing(lg, tx.body.listing_id, tx)
    listing.active = False
    listing.updated_height = ctx.height
    lg.put_listing(listing)
    return [Event("listing_delisted", {"listing_id": listing.id, "merchant": listing.merchant})]


def buy(lg: Ledger, ctx: BlockContext, params: GenesisParams, tx: Tx) -> Events:
    b = tx.body
    buyer = tx.sender_address
    listing = lg.listing(b.listing_id)
    if listing is None:
        raise E.VMError(E.LISTING_NOT_FOUND, f"listing {b.listing_id} does not exist")
    if not listing.active:
        raise E.VMError(E.LISTING_INACTIVE, f"listing {b.listing_id} was delisted")
    if listing.merchant == buyer:
        raise E.VMError(E.SELF_PURCHASE, "a merchant cannot buy its own listing")
    if b.referrer is not None and b.referrer in (buyer, listing.merchant):
        raise E.VMError(E.BAD_REFERRER, "the referrer cannot be the buyer or the merchant")
    if listing.price > b.max_unit_price:
        raise E.VMError(E.PRICE_ABOVE_LIMIT, f"price {listing.price} is above your limit {b.max_unit_price}")
    if b.quantity > listing.quantity:
        raise E.VMError(E.INSUFFICIENT_INVENTORY, f"{listing.quantity} available, {b.quantity} requested")
    amount = b.quantity * listing.price
    lg.debit(buyer, amount)
    listing.quantity -= b.quantity
    listing.sold += b.quantity
    lg.put_listing(listing)
    order_id = lg.next_id(ORDER_SEQ)
    ship_by = ctx.height + listing.ship_within
    order = Order(order_id, listing.id, buyer, listing.merchant, b.quantity, listing.price, amount,
                  amount, T.PAID, ctx.height, ship_by, listing.confirm_within, 0, "", "", None,
                  b.referrer, 0, False, 0, 0)
    lg.put_order(order)
    lg.add_escrow(amount)
    lg.index(ORDER_BY_BUYER + buyer + be8(order_id))
    lg.index(ORDER_BY_MERCHANT + listing.merchant + be8(order_id))
    lg.index(ORDER_BY_LISTING + be8(listing.id) + be8(order_id))
    lg.add_expiry(ship_by, order_id, EXPIRE_SHIP_BY)
    return [Event("order_created", {"order_id": order_id, "listing_id": listing.id, "amount": amount}),
            status_event(order, "buy")]


def ship(lg: Ledger, ctx: BlockContext, params: GenesisParams, tx: Tx) -> Events:
    b = tx.body
    order = _order(lg, b.order_id)
    _as_merchant(order, tx)
    _status_in(order, (T.PAID,), "ship")
    if ctx.height > order.ship_by:
        raise E.VMError(E.DEADLINE_PASSED, f"order {order.id} had to ship by height {order.ship_by}")
    _checkpoint_room(order, params)
    lg.remove_expiry(order.ship_by, order.id)
    order.status = T.SHIPPED
    order.confirm_by = ctx.height + order.confirm_within
    order.carrier, order.tracking_id, order.carrier_address = b.carrier, b.tracking_id, b.carrier_address
    lg.add_expiry(order.confirm_by, order.id, EXPIRE_CONFIRM_BY)
    lg.add_checkpoint(order, Checkpoint(ctx.height, tx.sender_address, "shipped", b.location, b.note))
    lg.put_order(order)
    return [status_event(order, "ship")]


def track(lg: Ledger, ctx: BlockContext, params: GenesisParams, tx: Tx) -> Events:
    b = tx.body
    order = _order(lg, b.order_id)
    sender = tx.sender_address
    if sender != order.merchant and (order.carrier_address is None or sender != order.carrier_address):
        raise E.VMError(E.NOT_CARRIER, f"sender may not add checkpoints to order {order.id}")
    _status_in(order, T.OPEN_STATUSES, "track")
    _checkpoint_room(order, params)
    lg.add_checkpoint(order, Checkpoint(ctx.height, sender, "checkpoint", b.location, b.note))
    lg.put_order(order)
    return [Event("checkpoint", {"order_id": order.id, "seq": order.checkpoints - 1})]


def confirm(lg: Ledger, ctx: BlockContext, params: GenesisParams, tx: Tx) -> Events:
    order = _order(lg, tx.body.order_id)
    _as_buyer(order, tx)
    _status_in(order, (T.SHIPPED,), "confirm")
    drop_deadline(lg, order)
    return release_to_merchant(lg, params, order, ctx.height, "confirm")


def cancel(lg: Ledger, ctx: BlockContext, params: GenesisParams, tx: Tx) -> Events:
    order = _order(lg, tx.body.order_id)
    _as_buyer(order, tx)
    _status_in(order, (T.PAID,), "cancel")
    drop_deadline(lg, order)
    return refund_to_buyer(lg, order, T.CANCELLED, ctx.height, "cancel")


def refund(lg: Ledger, ctx: BlockContext, params: GenesisParams, tx: Tx) -> Events:
    order = _order(lg, tx.body.order_id)
    _as_merchant(order, tx)
    _status_in(order, T.OPEN_STATUSES, "refund")
    drop_deadline(lg, order)
    return refund_to_buyer(lg, order, T.REFUNDED, ctx.height, "refund")


def dispute(lg: Ledger, ctx: BlockContext, params: GenesisParams, tx: Tx) -> Events:
    order = _order(lg, tx.body.order_id)
    _as_buyer(order, tx)
    _status_in(order, (T.SHIPPED,), "dispute")
    if ctx.height > order.confirm_by:
        raise E.VMError(E.DEADLINE_PASSED, f"order {order.id} could be disputed until height {order.confirm_by}")
    drop_deadline(lg, order)  # a disputed order waits for an arbiter, with no deadline
    order.status = T.DISPUTED
    lg.put_order(order)
    return [status_event(order, "dispute")]


def resolve(lg: Ledger, ctx: BlockContext, params: GenesisParams, tx: Tx) -> Events:
    b = tx.body
    if tx.sender_address not in params.arbiters:
        raise E.VMError(E.NOT_ARBITER, "sender is not an arbiter")
    order = _order(lg, b.order_id)
    _status_in(order, (T.DISPUTED,), "resolve")
    if b.buyer_amount > order.escrow:
        raise E.VMError(E.SPLIT_EXCEEDS_ESCROW, f"buyer share {b.buyer_amount} exceeds escrow {order.escrow}")
    lg.credit(order.buyer, b.buyer_amount)
    lg.credit(order.merchant, order.escrow - b.buyer_amount)
    lg.add_escrow(-order.escrow)
    order.escrow = 0
    order.status = T.RESOLVED
    order.closed_height = ctx.height
    lg.put_order(order)
    return [status_event(order, "resolve"),
            Event("resolution", {"order_id": order.id, "buyer_amount": b.buyer_amount,
                                 "merchant_amount": order.amount - b.buyer_amount})]


def review(lg: Ledger, ctx: BlockContext, params: GenesisParams, tx: Tx) -> Events:
    b = tx.body
    order = _order(lg, b.order_id)
    _as_buyer(order, tx)
    if order.status not in T.CLOSED_FOR_REVIEW:
        raise E.VMError(E.REVIEW_NOT_ALLOWED,
                        f"order {order.id} is {T.STATUS_NAMES[order.status]}, not COMPLETED or RESOLVED")
    if order.reviewed:
        raise E.VMError(E.ALREADY_REVIEWED, f"order {order.id} already has a review")
    item = Review(order.id, order.listing_id, order.buyer, order.merchant, b.rating, b.text,
                  ctx.height, order.amount)
    lg.state.put(REVIEW + be8(order.id), pack(item))
    lg.index(REVIEW_BY_MERCHANT + order.merchant + be8(order.id))
    lg.index(REVIEW_BY_LISTING + be8(order.listing_id) + be8(order.id))
    reputation = lg.reputation(order.merchant)
    reputation.count += 1
    reputation.rating_sum += b.rating
    reputation.weighted_sum += b.rating * order.amount
    reputation.weight_sum += order.amount
    lg.put_reputation(order.merchant, reputation)
    order.reviewed = True
    lg.put_order(order)
    events = [Event("review", {"order_id": order.id, "merchant": order.merchant, "rating": b.rating})]
    return events + pay_from_pool(lg, order.buyer, params.review_reward, "review", order.id)


def reward(lg: Ledger, ctx: BlockContext, params: GenesisParams, tx: Tx) -> Events:
    b = tx.body
    order = _order(lg, b.order_id)
    if order.merchant != tx.sender_address or order.status not in T.CLOSED_FOR_REVIEW:
        raise E.VMError(E.REWARD_NOT_ALLOWED,
                        f"sender is not the merchant of a COMPLETED/RESOLVED order {order.id}")
    lg.debit(tx.sender_address, b.amount)
    lg.credit(order.buyer, b.amount)
    order.rewarded += b.amount
    lg.put_order(order)
    return [Event("reward", {"to": order.buyer, "amount": b.amount, "reason": "merchant",
                             "order_id": order.id})]

