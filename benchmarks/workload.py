"""The mixed commerce workload, signed before each stage's clock starts.

Listing and order ids are counters assigned at commit, so the workload runs in stages:
setup (merchants list items with large quantities, unmeasured), then measured stages
[buy + list + transfer], [ship + transfer], [confirm + transfer], [review + reward +
transfer]. Between stages (clock paused) the ids are read from the committed blocks: ids
increase by one per created listing/order in block order, and a sample is checked against
the node's `listing`/`order` answers. Nonces per sender are tracked here.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from commerce_vm import sign_tx
from commerce_vm import txtypes as T
from core.hashing import sha256

from .net import Account

FEE = 10
PRICE = 1_000
WINDOW = 500_000  # ship/confirm windows in blocks: stages never hit a deadline


@dataclass(slots=True)
class Item:
    kind: str
    sender: int  # account index
    hash: str
    raw: str
    ref: int = 0  # for buys: index into Workload.orders


@dataclass(slots=True)
class Order:
    buyer: int
    merchant: int
    listing_id: int
    order_id: int = 0


@dataclass
class Workload:
    chain_id: str
    accounts: list[Account]
    merchants: int
    seed: int = 7
    nonces: dict[int, int] = field(default_factory=dict)
    listings: list[tuple[int, int]] = field(default_factory=list)  # (listing id, merchant)
    orders: list[Order] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    # --- signing ------------------------------------------------------------------------

    def sign(self, kind: str, sender: int, body: list, ref: int = 0) -> Item:
        nonce = self.nonces.get(sender, 0)
        self.nonces[sender] = nonce + 1
        raw = sign_tx(self.accounts[sender].key, self.chain_id, T.TYPE_CODES[kind], nonce, FEE,
                      body)
        return Item(kind, sender, sha256(raw).hex(), raw.hex(), ref)

    def buyer(self) -> int:
        return self.rng.randrange(self.merchants, len(self.accounts))

    def transfer(self) -> Item:
        sender = self.rng.randrange(len(self.accounts))
        to = (sender + 1 + self.rng.randrange(len(self.accounts) - 1)) % len(self.accounts)
        return self.sign("transfer", sender, [self.accounts[to].address, 1 + self.rng.randrange(99)])

    def listing(self, merchant: int, n: int) -> Item:
        return self.sign("list", merchant, [0, f"Item {merchant}-{n}", PRICE, 10**12, WINDOW,
                                            WINDOW, f"Made by merchant {merchant}, Lyon",
                                            b"sku:%d" % n])

    # --- stages (each returns the items in submission order) --------------------------

    def setup(self, per_merchant: int = 2) -> list[Item]:
        return [self.listing(m, n) for n in range(per_merchant) for m in range(self.merchants)]

    def stage_buy(self, size: int) -> list[Item]:
        buys = size // 2
        new_listings = min(self.merchants, max(1, size // 20))
        items = []
        for _ in range(buys):
            listing_id, merchant = self.listings[self.rng.randrange(len(self.listings))]
            buyer = self.buyer()
            referrer = None
            if self.rng.random() < 0.1:
                referrer = self.accounts[self.buyer()].address
                if referrer == self.accounts[buyer].address:
                    referrer = None
            self.orders.append(Order(buyer, merchant, listing_id))
            items.append(("buy", len(self.orders) - 1, [listing_id, 1, PRICE, referrer]))
        items += [("list", m, None) for m in range(new_listings)]
        items += [("transfer", 0, None)] * (size - len(items))
        self.rng.shuffle(items)
        out = []
        for kind, ref, body in items:
            if kind == "buy":
                out.append(self.sign("buy", self.orders[ref].buyer, body, ref))
            elif kind == "list":
                out.append(self.listing(ref, 1000 + len(self.listings) + len(out)))
            else:
                out.append(self.transfer())
        return out

    def _with_transfers(self, size: int, items: list[tuple[str, int, list]]) -> list[Item]:
        items = items + [("transfer", 0, [])] * max(0, size - len(items))
        self.rng.shuffle(items)
        return [self.transfer() if kind == "transfer" else self.sign(kind, sender, body)
                for kind, sender, body in items]

    def stage_ship(self, size: int) -> list[Item]:
        return self._with_transfers(size, [
            ("ship", o.merchant, [o.order_id, "PostNord", f"TRK{o.order_id:09d}", None,
                                  "Warehouse Lyon", "packed"]) for o in self.orders])

    def stage_confirm(self, size: int) -> list[Item]:
        return self._with_transfers(size, [("confirm", o.buyer, [o.order_id])
                                           for o in self.orders])

    def stage_review_reward(self, size: int) -> list[Item]:
        reviews = min(len(self.orders), int(size * 0.4))
        rewards = min(len(self.orders), int(size * 0.3))
        items = [("review", o.buyer, [o.order_id, 1 + o.order_id % 5, "Arrived as described."])
                 for o in self.orders[:reviews]]
        items += [("reward", o.merchant, [o.order_id, 5, "thanks"])
                  for o in self.orders[len(self.orders) - rewards:]]
        return self._with_transfers(size, items)

    def stage_steady(self, size: int) -> list[Item]:
        """Independent txs for the offered-rate run: buys, new listings and transfers."""
        keep = len(self.orders)
        items = self.stage_buy(size)
        del self.orders[keep:]  # these orders are not followed further
        return items

    # --- ids from committed blocks ----------------------------------------------------------

    def assign_ids(self, items: list[Item], block_hashes: list[list[str]], first_listing: int,
                   first_order: int) -> tuple[int, int]:
        """Give created listings and orders their ids from the committed block order;
        returns the next (listing id, order id)."""
        by_hash = {it.hash: it for it in items}
        listing_id, order_id = first_listing, first_order
        for hashes in block_hashes:
            for h in hashes:
                item = by_hash.get(h)
                if item is None:
                    continue
                if item.kind == "list":
                    self.listings.append((listing_id, item.sender))
                    listing_id += 1
                elif item.kind == "buy":
                    self.orders[item.ref].order_id = order_id
                    order_id += 1
        return listing_id, order_id
