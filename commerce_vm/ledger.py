"""State layout (keys and records) and typed access over an overlay.

Records are positional lists in the canonical encoding. Secondary indexes (`lm/`, `ob/`,
`om/`, `ol/`, `rm/`, `rl/`, value b"") are keys beside the records, written in the same block
but not committed by the app hash: each is a function of a committed record (an order names
its buyer, merchant and listing), no handler reads one, and a proof over hashed keys could
only show one entry, never that a list is complete. The expiry index (`x/`) is left out
too, though `end_block` reads it: it is a function of the committed orders (each PAID
order has its ship_by entry, each SHIPPED order its confirm_by entry, no other order one;
`expiry.expected_expiry_index`), so committing the orders commits it. Integers in keys are
8-byte big-endian so byte order is numeric order.

Key layout (all committed except `~`, the app-hash tree, the secondary indexes and `x/`):
  a/<addr20>                      Account [balance, nonce]
  l/<id8>                         Listing
  lm/<merchant20><id8>            listings by merchant
  o/<id8>                         Order
  ob/<buyer20><id8>  om/<merchant20><id8>  ol/<listing8><order8>   orders by buyer/merchant/listing
  c/<order8><seq4>                provenance checkpoint
  r/<order8>                      Review;  rm/<merchant20><order8>, rl/<listing8><order8>
  p/<merchant20>                  Reputation
  x/<height8><order8>             expiry due at the end of block <height> ([kind])
  v/<pubkey32>                    validator [power]
  vc/<change32>                   proposed validator change [action, pubkey, power]
  vv/<change32><voter32>          a vote for that change
  vp/<height8><seq4>              validator update applied at the start of block <height>
  m/listing_seq m/order_seq m/pool m/escrow m/params   counters, pool, escrow total, params
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

import msgpack

from core.encoding import encode_trusted

from . import errors as E
from .state import Overlay, StateReader

ACCOUNT = b"a/"
LISTING = b"l/"
LISTING_BY_MERCHANT = b"lm/"
ORDER = b"o/"
ORDER_BY_BUYER = b"ob/"
ORDER_BY_MERCHANT = b"om/"
ORDER_BY_LISTING = b"ol/"
CHECKPOINT = b"c/"
REVIEW = b"r/"
REVIEW_BY_MERCHANT = b"rm/"
REVIEW_BY_LISTING = b"rl/"
REPUTATION = b"p/"
EXPIRY = b"x/"
VALIDATOR = b"v/"
VOTE_CHANGE = b"vc/"
VOTE = b"vv/"
PENDING_UPDATE = b"vp/"
LISTING_SEQ = b"m/listing_seq"
ORDER_SEQ = b"m/order_seq"
POOL = b"m/pool"
ESCROW = b"m/escrow"
PARAMS = b"m/params"

# Not committed by the app hash (see the module's docstring). Each is three bytes long and
# no committed key starts with one: those start with one letter and "/", or are "v?/".
INDEX_PREFIXES = (LISTING_BY_MERCHANT, ORDER_BY_BUYER, ORDER_BY_MERCHANT, ORDER_BY_LISTING,
                  REVIEW_BY_MERCHANT, REVIEW_BY_LISTING)
# Everything the app hash leaves out but the tree's own records: the indexes above and the
# expiry index, which end_block reads (see the module's docstring). No other key starts
# with "x".
UNCOMMITTED_PREFIXES = INDEX_PREFIXES + (EXPIRY,)

EXPIRE_SHIP_BY = 1  # PAID order not shipped in time: automatic refund
EXPIRE_CONFIRM_BY = 2  # SHIPPED order not confirmed or disputed in time: automatic release


def be8(n: int) -> bytes:
    return n.to_bytes(8, "big")


def expiry_key(height: int, order_id: int) -> bytes:
    return EXPIRY + be8(height) + be8(order_id)


def expiry_value(kind: int) -> bytes:
    return encode_trusted([kind])


def be4(n: int) -> bytes:
    return n.to_bytes(4, "big")


def unpack(value: bytes) -> Any:
    # State bytes were written by the VM itself, so the fast unchecked decoder is fine.
    return msgpack.unpackb(value, raw=False)


def pack(record: Any) -> bytes:
    """The record's fields in declaration order, as one array. One attrgetter per record
    type reads them in a single call (an order's 21 fields cost 4.5 us with getattr each,
    2.4 us so); tuples and lists encode alike."""
    return encode_trusted(_FIELDS[type(record)](record))


@dataclass(slots=True)
class Account:
    balance: int = 0
    nonce: int = 0


@dataclass(slots=True)
class Listing:
    id: int
    merchant: bytes
    title: str
    price: int
    quantity: int  # units still available
    ship_within: int
    confirm_within: int
    origin: str
    metadata: bytes
    active: bool
    created_height: int
    updated_height: int
    sold: int  # units sold and not returned


@dataclass(slots=True)
class Order:
    id: int
    listing_id: int
    buyer: bytes
    merchant: bytes
    quantity: int
    unit_price: int
    amount: int  # quantity * unit_price, the order value
    escrow: int  # held now (0 once closed)
    status: int
    created_height: int
    ship_by: int
    confirm_within: int
    confirm_by: int  # 0 until shipped
    carrier: str
    tracking_id: str
    carrier_address: bytes | None
    referrer: bytes | None
    checkpoints: int
    reviewed: bool
    rewarded: int  # loyalty tokens the merchant paid on this order
    closed_height: int


@dataclass(slots=True)
class Checkpoint:
    height: int
    actor: bytes
    kind: str  # "shipped" or "checkpoint"
    location: str
    note: str


@dataclass(slots=True)
class Review:
    order_id: int
    listing_id: int
    buyer: bytes
    merchant: bytes
    rating: int
    text: str
    height: int
    weight: int  # the order value, so big purchases count more


@dataclass(slots=True)
class Reputation:
    count: int = 0
    rating_sum: int = 0
    weighted_sum: int = 0  # sum of rating * order value
    weight_sum: int = 0  # sum of order value

    @property
    def average_milli(self) -> int:
        """Value-weighted average rating in thousandths of a star (integer, floor)."""
        if self.weight_sum:
            return self.weighted_sum * 1000 // self.weight_sum
        return self.rating_sum * 1000 // self.count if self.count else 0


# every record type has several fields (attrgetter of one name returns the bare value)
_FIELDS: dict[type, Callable[[Any], tuple[Any, ...]]] = {
    cls: attrgetter(*cls.__slots__) for cls in (Listing, Order, Checkpoint, Review, Reputation)}


def load(cls: Any, value: bytes) -> Any:
    return cls(*unpack(value))


class Ledger:
    """Typed reads and writes of the records above, over one overlay."""

    __slots__ = ("state",)

    def __init__(self, state: Overlay):
        self.state = state

    # --- accounts, pool, escrow ---------------------------------------------------------
    def account(self, address: bytes) -> Account:
        value = self.state.get(ACCOUNT + address)
        return Account() if value is None else Account(*unpack(value))

    def put_account(self, address: bytes, account: Account) -> None:
        if account.balance == 0 and account.nonce == 0:
            self.state.delete(ACCOUNT + address)  # never-used empty accounts are not stored
        else:
            self.state.put(ACCOUNT + address, encode_trusted([account.balance, account.nonce]))

    def credit(self, address: bytes, amount: int) -> None:
        if amount:
            account = self.account(address)
            account.balance += amount
            self.put_account(address, account)

    def debit(self, address: bytes, amount: int) -> None:
        account = self.account(address)
        if account.balance < amount:
            raise E.VMError(E.INSUFFICIENT_FUNDS, f"balance {account.balance} is below {amount}")
        account.balance -= amount
        self.put_account(address, account)

    def _int(self, key: bytes) -> int:
        value = self.state.get(key)
        return 0 if value is None else unpack(value)

    def _set_int(self, key: bytes, n: int) -> None:
        self.state.put(key, encode_trusted(n))

    def pool(self) -> int:
        return self._int(POOL)

    def set_pool(self, amount: int) -> None:
        self._set_int(POOL, amount)

    def escrow_total(self) -> int:
        return self._int(ESCROW)

    def add_escrow(self, delta: int) -> None:
        self._set_int(ESCROW, self._int(ESCROW) + delta)

    def next_id(self, counter: bytes) -> int:
        n = self._int(counter) + 1
        self._set_int(counter, n)
        return n

    # --- listings and orders ------------------------------------------------------------
    def listing(self, listing_id: int) -> Listing | None:
        value = self.state.get(LISTING + be8(listing_id))
        return None if value is None else load(Listing, value)

    def put_listing(self, listing: Listing) -> None:
        self.state.put(LISTING + be8(listing.id), pack(listing))

    def order(self, order_id: int) -> Order | None:
        value = self.state.get(ORDER + be8(order_id))
        return None if value is None else load(Order, value)

    def put_order(self, order: Order) -> None:
        self.state.put(ORDER + be8(order.id), pack(order))

    def index(self, key: bytes) -> None:
        self.state.put(key, b"")

    def add_checkpoint(self, order: Order, checkpoint: Checkpoint) -> None:
        self.state.put(CHECKPOINT + be8(order.id) + be4(order.checkpoints), pack(checkpoint))
        order.checkpoints += 1

    def add_expiry(self, height: int, order_id: int, kind: int) -> None:
        self.state.put(expiry_key(height, order_id), expiry_value(kind))

    def remove_expiry(self, height: int, order_id: int) -> None:
        self.state.delete(expiry_key(height, order_id))

    def reputation(self, merchant: bytes) -> Reputation:
        value = self.state.get(REPUTATION + merchant)
        return Reputation() if value is None else load(Reputation, value)

    def put_reputation(self, merchant: bytes, reputation: Reputation) -> None:
        self.state.put(REPUTATION + merchant, pack(reputation))

    # --- validators -----------------------------------------------------------------------
    def validators(self) -> dict[bytes, int]:
        """Current validator set, pubkey -> power, in pubkey order."""
        return {k[len(VALIDATOR):]: unpack(v)[0] for k, v in self.state.iterate(VALIDATOR)}

    def set_validator(self, pubkey: bytes, power: int) -> None:
        if power:
            self.state.put(VALIDATOR + pubkey, encode_trusted([power]))
        else:
            self.state.delete(VALIDATOR + pubkey)


def read_int(state: StateReader, key: bytes) -> int:
    value = state.get(key)
    return 0 if value is None else unpack(value)
