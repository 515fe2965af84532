"""Read-only queries for the RPC. Each takes a StateReader and returns JSON-ready dicts:
addresses as cm1 text, pubkeys and other bytes as hex, amounts as ints.

Pagination: `limit` (1..MAX_PAGE) and `cursor` (the id to start from, inclusive, usually the
previous page's `next_cursor`). Pages are in ascending id order.
"""

from __future__ import annotations

from typing import Any

from core.address import address_to_text

from . import txtypes as T
from .ledger import (
    ACCOUNT,
    CHECKPOINT,
    ESCROW,
    LISTING,
    LISTING_BY_MERCHANT,
    ORDER,
    ORDER_BY_BUYER,
    ORDER_BY_LISTING,
    ORDER_BY_MERCHANT,
    PARAMS,
    PENDING_UPDATE,
    POOL,
    REPUTATION,
    REVIEW,
    REVIEW_BY_LISTING,
    REVIEW_BY_MERCHANT,
    VALIDATOR,
    Checkpoint,
    Listing,
    Order,
    Reputation,
    Review,
    be8,
    load,
    read_int,
    unpack,
)
from .params import GenesisParams
from .state import StateReader

MAX_PAGE = 100


def _addr(value: bytes | None) -> str | None:
    return None if value is None else address_to_text(value)


def nonce(state: StateReader, address: bytes) -> int:
    """The account's next nonce (cheap: no text rendering, for the mempool's hot path)."""
    value = state.get(ACCOUNT + address)
    return 0 if value is None else unpack(value)[1]


def account(state: StateReader, address: bytes) -> dict[str, Any]:
    value = state.get(ACCOUNT + address)
    balance, nonce = (0, 0) if value is None else unpack(value)
    return {"address": address_to_text(address), "balance": balance, "nonce": nonce}


def listing_dict(item: Listing) -> dict[str, Any]:
    return {
        "id": item.id, "merchant": _addr(item.merchant), "title": item.title, "price": item.price,
        "quantity": item.quantity, "ship_within": item.ship_within,
        "confirm_within": item.confirm_within, "origin": item.origin,
        "metadata": item.metadata.hex(), "active": item.active,
        "created_height": item.created_height, "updated_height": item.updated_height,
        "sold": item.sold,
    }


def order_dict(item: Order) -> dict[str, Any]:
    return {
        "id": item.id, "listing_id": item.listing_id, "buyer": _addr(item.buyer),
        "merchant": _addr(item.merchant), "quantity": item.quantity,
        "unit_price": item.unit_price, "amount": item.amount, "escrow": item.escrow,
        "status": T.STATUS_NAMES[item.status], "created_height": item.created_height,
        "ship_by": item.ship_by, "confirm_within": item.confirm_within,
        "confirm_by": item.confirm_by or None, "carrier": item.carrier,
        "tracking_id": item.tracking_id, "carrier_address": _addr(item.carrier_address),
        "referrer": _addr(item.referrer), "checkpoints": item.checkpoints,
        "reviewed": item.reviewed, "rewarded": item.rewarded,
        "closed_height": item.closed_height or None,
    }


def review_dict(item: Review) -> dict[str, Any]:
    return {
        "order_id": item.order_id, "listing_id": item.listing_id, "buyer": _addr(item.buyer),
        "merchant": _addr(item.merchant), "rating": item.rating, "text": item.text,
        "height": item.height, "weight": item.weight,
    }


def listing(state: StateReader, listing_id: int) -> dict[str, Any] | None:
    value = state.get(LISTING + be8(listing_id))
    return None if value is None else listing_dict(load(Listing, value))


def order(state: StateReader, order_id: int) -> dict[str, Any] | None:
    value = state.get(ORDER + be8(order_id))
    return None if value is None else order_dict(load(Order, value))


def _check_page(limit: int, cursor: int | None) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be an integer in [1, {MAX_PAGE}]")
    if cursor is not None and (isinstance(cursor, bool) or not isinstance(cursor, int)
                               or not 0 <= cursor < 2**63):
        raise ValueError("cursor must be a non-negative integer id")


def _page_ids(state: StateReader, prefix: bytes, limit: int, cursor: int | None) -> tuple[list[int], int | None]:
    """Ids (the last 8 key bytes) under prefix from cursor on, plus the next cursor."""
    _check_page(limit, cursor)
    start = None if cursor is None else prefix + be8(cursor)
    ids: list[int] = []
    for key, _ in state.iterate(prefix, start):
        item_id = int.from_bytes(key[-8:], "big")
        if len(ids) == limit:
            return ids, item_id
        ids.append(item_id)
    return ids, None


def listings(state: StateReader, merchant: bytes | None = None, limit: int = 20,
             cursor: int | None = None) -> dict[str, Any]:
    prefix = LISTING if merchant is None else LISTING_BY_MERCHANT + merchant
    ids, next_cursor = _page_ids(state, prefix, limit, cursor)
    return {"items": [listing(state, i) for i in ids], "next_cursor": next_cursor}


def orders(state: StateReader, buyer: bytes | None = None, merchant: bytes | None = None,
           listing_id: int | None = None, limit: int = 20, cursor: int | None = None) -> dict[str, Any]:
    if sum(x is not None for x in (buyer, merchant, listing_id)) > 1:
        raise ValueError("filter by at most one of buyer, merchant, listing")
    if buyer is not None:
        prefix = ORDER_BY_BUYER + buyer
    elif merchant is not None:
        prefix = ORDER_BY_MERCHANT + merchant
    elif listing_id is not None:
        prefix = ORDER_BY_LISTING + be8(listing_id)
    else:
        prefix = ORDER
    ids, next_cursor = _page_ids(state, prefix, limit, cursor)
    return {"items": [order(state, i) for i in ids], "next_cursor": next_cursor}


def reviews(state: StateReader, merchant: bytes | None = None, listing_id: int | None = None,
            limit: int = 20, cursor: int | None = None) -> dict[str, Any]:
    if (merchant is None) == (listing_id is None):
        raise ValueError("filter reviews by exactly one of merchant or listing")
    prefix = REVIEW_BY_MERCHANT + merchant if merchant is not None else REVIEW_BY_LISTING + be8(listing_id or 0)
    ids, next_cursor = _page_ids(state, prefix, limit, cursor)
    items = []
    for order_id in ids:
        value = state.get(REVIEW + be8(order_id))
        if value is not None:
            items.append(review_dict(load(Review, value)))
    return {"items": items, "next_cursor": next_cursor}


def reputation(state: StateReader, merchant: bytes) -> dict[str, Any]:
    value = state.get(REPUTATION + merchant)
    rep = Reputation() if value is None else load(Reputation, value)
    return {"merchant": address_to_text(merchant), "count": rep.count, "rating_sum": rep.rating_sum,
            "weighted_sum": rep.weighted_sum, "weight_sum": rep.weight_sum,
            "average_milli": rep.average_milli}


def provenance(state: StateReader, order_id: int) -> dict[str, Any] | None:
    """The trail of an order: the listing's origin fields, then every checkpoint in order."""
    value = state.get(ORDER + be8(order_id))
    if value is None:
        return None
    item = load(Order, value)
    source = load(Listing, state.get(LISTING + be8(item.listing_id)))
    trail = []
    for _, raw in state.iterate(CHECKPOINT + be8(order_id)):
        cp = load(Checkpoint, raw)
        trail.append({"height": cp.height, "actor": _addr(cp.actor), "kind": cp.kind,
                      "location": cp.location, "note": cp.note})
    return {
        "order_id": order_id,
        "status": T.STATUS_NAMES[item.status],
        "listing": {"id": source.id, "title": source.title, "merchant": _addr(source.merchant),
                    "origin": source.origin, "created_height": source.created_height},
        "carrier": item.carrier, "tracking_id": item.tracking_id,
        "checkpoints": trail,
    }


def validators(state: StateReader) -> dict[str, Any]:
    current = [{"pub_key": k[len(VALIDATOR):].hex(), "power": unpack(v)[0]}
               for k, v in state.iterate(VALIDATOR)]
    pending = []
    for key, value in state.iterate(PENDING_UPDATE):
        pubkey, power = unpack(value)
        pending.append({"effective_height": int.from_bytes(key[len(PENDING_UPDATE):len(PENDING_UPDATE) + 8], "big"),
                        "pub_key": pubkey.hex(), "power": power})
    return {"validators": current, "total_power": sum(v["power"] for v in current), "pending": pending}


def rewards_pool(state: StateReader) -> dict[str, Any]:
    return {"pool": read_int(state, POOL), "escrow": read_int(state, ESCROW)}


def params(state: StateReader) -> dict[str, Any]:
    value = state.get(PARAMS)
    if value is None:
        raise LookupError("state has no genesis params")
    return GenesisParams.from_list(unpack(value)).to_dict()
