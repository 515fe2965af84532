"""Generate the commerce_vm golden vectors: `python -m tests.vectors.generate`.

Each case is self-contained JSON: genesis params, blocks of raw tx hex with a readable
description and the expected code/inclusion per tx, the app hash after every block, and
selected post-state facts (query results). Keys are deterministic and ed25519 signing is
deterministic, so re-running this script reproduces the files byte for byte. The generator
asserts each tested tx's intended code, so a vector records what the rule says, not just
what the code happened to do.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from commerce_vm import VMError, app_hash_of, decode_tx, execute_block, query
from commerce_vm import errors as E
from commerce_vm import txtypes as T
from commerce_vm.params import GenesisParams
from core.address import address_to_text
from core.encoding import encode
from tests.vm_helpers import KEYS, VALIDATOR_NAMES, Chain, addr, default_params

OUT = Path(__file__).parent / "cases"
A = {name: addr(k) for name, k in KEYS.items()}
PK = {name: k.public_key for name, k in KEYS.items()}


class Recorder:
    def __init__(self, params: GenesisParams | None = None):
        self.chain = Chain(params)
        self.blocks: list[dict[str, Any]] = []
        self.facts: list[dict[str, Any]] = []

    def block(self, items: list[tuple[str, bytes, int | None]], misbehaving: tuple[bytes, ...] = ()) -> list[dict[str, Any]]:
        """items: (description, raw, expected code or None). Returns per-tx outcomes."""
        chain = self.chain
        outcomes: list[dict[str, Any] | None] = []
        txs = []
        for _, raw, _ in items:
            try:
                txs.append(decode_tx(raw, chain.params.chain_id))
                outcomes.append(None)
            except VMError as err:
                outcomes.append({"code": err.code, "included": False})
        before = app_hash_of(chain.state)
        ctx = chain.context(misbehaving=misbehaving)
        result = execute_block(chain.state, chain.params, ctx, txs, drop_rejected=True)
        results = iter(result.results)
        for i, outcome in enumerate(outcomes):
            if outcome is None:
                r = next(results)
                outcomes[i] = {"code": r.code, "included": r.included}
        chain.state.apply(result.changes)
        chain.height += 1
        for (desc, _, expect), outcome in zip(items, outcomes, strict=True):
            if expect is not None and outcome["code"] != expect:
                raise AssertionError(f"{desc}: expected code {expect}, got {outcome}")
        if all(not o["included"] for o in outcomes) and outcomes and not result.events:
            assert result.app_hash == before, "rejected txs must not change state"
        self.blocks.append({
            "height": chain.height,
            "time": ctx.time,
            "misbehaving": [m.hex() for m in misbehaving],
            "txs": [{"desc": desc, "raw": raw.hex(), "expect": o}
                    for (desc, raw, _), o in zip(items, outcomes, strict=True)],
            "app_hash": result.app_hash.hex(),
        })
        return outcomes

    def step(self, signer: str, tx_type: int, body: list[Any], expect: int | None = 0,
             desc: str = "", **kw: Any) -> dict[str, Any]:
        auto = "nonce" not in kw
        raw = self.chain.tx(signer, tx_type, body, **kw)
        text = desc or f"{signer} {T.TYPE_NAMES[tx_type]} {body!r}"[:160]
        outcome = self.block([(text, raw, expect)])[0]
        if auto and not outcome["included"]:
            self.chain.nonces[signer] -= 1
        return outcome

    def raw(self, raw: bytes, desc: str, expect: int) -> None:
        self.block([(desc, raw, expect)])

    def empty(self, n: int) -> None:
        for _ in range(n):
            self.block([])

    def fact(self, name: str, *args: Any) -> None:
        """A query result the runner checks right after the block executed last."""
        texts = [_arg(a) for a in args]
        self.facts.append({"after_block": len(self.blocks), "query": name, "args": texts,
                           "result": run_query(self.chain.state, name, texts)})


CASES: list[tuple[str, str, Callable[[Recorder], None], Callable[[], GenesisParams] | None]] = []


def case(name: str, description: str, params: Callable[[], GenesisParams] | None = None):
    def register(fn: Callable[[Recorder], None]) -> Callable[[Recorder], None]:
        CASES.append((name, description, fn, params))
        return fn
    return register


# --- setup steps shared by many cases ---------------------------------------------------------
LISTING = [0, "Single-origin coffee 1kg", 500, 10, 0, 0, "Finca La Esperanza, Huila, CO", b"grade=AA"]


def listed(r: Recorder) -> None:
    r.step("merchant", T.LIST, list(LISTING))


def ordered(r: Recorder, referrer: bytes | None = None) -> None:
    listed(r)
    r.step("alice", T.BUY, [1, 2, 500, referrer])


def shipped(r: Recorder, referrer: bytes | None = None) -> None:
    ordered(r, referrer)
    r.step("merchant", T.SHIP, [1, "DHL", "JD0001", A["carrier"], "Neiva, CO", "left the farm"])


def disputed(r: Recorder) -> None:
    shipped(r)
    r.step("alice", T.DISPUTE, [1, "bag arrived torn"])


def completed(r: Recorder) -> None:
    shipped(r)
    r.step("alice", T.CONFIRM, [1])


def order_facts(r: Recorder) -> None:
    r.fact("order", 1)
    r.fact("listing", 1)
    for name in ("alice", "merchant"):
        r.fact("account", A[name])
    r.fact("rewards_pool")


# --- transfer -----------------------------------------------------------------------------------
@case("transfer_ok", "alice sends 1000 to bob; the fee goes to the rewards pool")
def _(r: Recorder) -> None:
    r.step("alice", T.TRANSFER, [A["bob"], 1000])
    r.fact("account", A["alice"])
    r.fact("account", A["bob"])
    r.fact("rewards_pool")


@case("transfer_to_new_account", "alice funds an address that never existed")
def _(r: Recorder) -> None:
    r.step("alice", T.TRANSFER, [A["stranger"], 77])
    r.fact("account", A["stranger"])


@case("transfer_insufficient_funds", "included as failed: fee charged, nonce incremented, no transfer")
def _(r: Recorder) -> None:
    r.step("alice", T.TRANSFER, [A["bob"], 999_995], expect=E.INSUFFICIENT_FUNDS.code)
    r.fact("account", A["alice"])
    r.fact("account", A["bob"])


@case("transfer_self", "a transfer to oneself fails (fee still charged)")
def _(r: Recorder) -> None:
    r.step("alice", T.TRANSFER, [A["alice"], 5], expect=E.SELF_TRANSFER.code)
    r.fact("account", A["alice"])


@case("transfer_zero_amount", "amount 0 is a malformed body: rejected")
def _(r: Recorder) -> None:
    r.step("alice", T.TRANSFER, [A["bob"], 0], expect=E.BAD_BODY.code)
    r.fact("account", A["alice"])


@case("transfer_bad_nonce", "a nonce from the future is rejected")
def _(r: Recorder) -> None:
    r.step("alice", T.TRANSFER, [A["bob"], 5], nonce=3, expect=E.BAD_NONCE.code)
    r.fact("account", A["alice"])


@case("transfer_replayed", "the same signed tx replayed in the next block is rejected (nonce used)")
def _(r: Recorder) -> None:
    raw = r.chain.tx("alice", T.TRANSFER, [A["bob"], 5])
    r.raw(raw, "alice sends 5 to bob", 0)
    r.raw(raw, "the same bytes again", E.BAD_NONCE.code)
    r.fact("account", A["alice"])
    r.fact("account", A["bob"])


@case("transfer_duplicate_in_block", "a tx repeated within one block: the copy is rejected")
def _(r: Recorder) -> None:
    raw = r.chain.tx("alice", T.TRANSFER, [A["bob"], 5])
    r.block([("alice sends 5", raw, 0), ("duplicate", raw, E.BAD_NONCE.code)])
    r.fact("account", A["alice"])


@case("transfer_cannot_pay_fee", "an empty account cannot pay the fee: rejected, nothing changes")
def _(r: Recorder) -> None:
    r.step("stranger", T.TRANSFER, [A["bob"], 1], expect=E.CANNOT_PAY_FEE.code)
    r.fact("account", A["stranger"])


@case("transfer_fee_too_low", "fee below the genesis minimum for transfer: rejected")
def _(r: Recorder) -> None:
    r.step("alice", T.TRANSFER, [A["bob"], 1], fee=9, expect=E.FEE_TOO_LOW.code)


@case("transfer_higher_fee", "a fee above the minimum is charged in full")
def _(r: Recorder) -> None:
    r.step("alice", T.TRANSFER, [A["bob"], 1], fee=1000)
    r.fact("account", A["alice"])
    r.fact("rewards_pool")


@case("bad_signature", "a flipped signature bit: rejected")
def _(r: Recorder) -> None:
    raw = bytearray(r.chain.tx("alice", T.TRANSFER, [A["bob"], 1]))
    raw[-1] ^= 1
    r.raw(bytes(raw), "alice transfer with a corrupted signature", E.BAD_SIGNATURE.code)


@case("signature_by_other_key", "bob's key signs a tx that names alice as sender: rejected")
def _(r: Recorder) -> None:
    from core.keys import DOMAIN_TX

    unsigned = [r.chain.params.chain_id, T.TRANSFER, PK["alice"], 0, 10, [A["bob"], 1]]
    sig = KEYS["bob"].sign(DOMAIN_TX, r.chain.params.chain_id, encode(unsigned))
    r.raw(encode(unsigned + [sig]), "forged sender", E.BAD_SIGNATURE.code)


@case("wrong_chain", "a tx signed for another chain: rejected")
def _(r: Recorder) -> None:
    from commerce_vm import sign_tx

    raw = sign_tx(KEYS["alice"], "other-chain", T.TRANSFER, 0, 10, [A["bob"], 1])
    r.raw(raw, "transfer for chain other-chain", E.WRONG_CHAIN.code)


@case("unknown_type", "tx type 99 does not exist: rejected")
def _(r: Recorder) -> None:
    from commerce_vm import sign_tx

    raw = sign_tx(KEYS["alice"], r.chain.params.chain_id, 99, 0, 10, [])
    r.raw(raw, "type 99", E.UNKNOWN_TYPE.code)


@case("truncated", "a tx cut short by one byte: rejected as malformed")
def _(r: Recorder) -> None:
    raw = r.chain.tx("alice", T.TRANSFER, [A["bob"], 1])
    r.raw(raw[:-1], "truncated transfer", E.MALFORMED.code)


@case("non_canonical", "a nonce encoded as uint16 instead of a fixint: rejected as malformed")
def _(r: Recorder) -> None:
    raw = r.chain.tx("alice", T.TRANSFER, [A["bob"], 1], nonce=5)
    # the nonce 5 sits right after the 32-byte pubkey (c4 20 + 32 bytes) in the envelope
    at = raw.index(PK["alice"]) + 32
    assert raw[at] == 5
    bad = raw[:at] + b"\xcd\x00\x05" + raw[at + 1:]
    r.raw(bad, "nonce as cd 00 05", E.MALFORMED.code)


@case("oversized", "a tx above the maximum tx size: rejected")
def _(r: Recorder) -> None:
    body = [0, "x", 1, 1, 0, 0, "o", b"\x00" * (r.chain.params.max_tx_size)]
    r.step("merchant", T.LIST, body, expect=E.TX_TOO_LARGE.code, desc="list with 8 KiB metadata")


@case("bad_envelope", "a 31-byte sender key: rejected")
def _(r: Recorder) -> None:
    raw = encode([r.chain.params.chain_id, T.TRANSFER, b"\x01" * 31, 0, 10, [A["bob"], 1], b"\x00" * 64])
    r.raw(raw, "short pubkey", E.BAD_ENVELOPE.code)


@case("wrong_body_type", "a transfer whose amount is a string: rejected")
def _(r: Recorder) -> None:
    r.step("alice", T.TRANSFER, [A["bob"], "100"], expect=E.BAD_BODY.code)


# --- list / delist ------------------------------------------------------------------------------
@case("list_ok", "a merchant creates listing 1")
def _(r: Recorder) -> None:
    listed(r)
    r.fact("listing", 1)
    r.fact("listings", A["merchant"])


@case("list_second_gets_next_id", "ids are sequential")
def _(r: Recorder) -> None:
    listed(r)
    r.step("merchant2", T.LIST, [0, "Tea", 300, 5, 3, 7, "Darjeeling", b""])
    r.fact("listing", 2)
    r.fact("listings", None)


@case("list_update_ok", "the merchant updates price and quantity")
def _(r: Recorder) -> None:
    listed(r)
    r.step("merchant", T.LIST, [1, "Coffee 1kg (new crop)", 550, 20, 4, 6, "Huila", b""])
    r.fact("listing", 1)


@case("list_update_not_found", "updating a listing that does not exist")
def _(r: Recorder) -> None:
    r.step("merchant", T.LIST, [7, "x", 1, 1, 0, 0, "", b""], expect=E.LISTING_NOT_FOUND.code)


@case("list_update_not_owner", "another merchant cannot update listing 1")
def _(r: Recorder) -> None:
    listed(r)
    r.step("merchant2", T.LIST, [1, "hijack", 1, 1, 0, 0, "", b""], expect=E.NOT_LISTING_OWNER.code)
    r.fact("listing", 1)


@case("list_update_inactive", "a delisted listing cannot be updated")
def _(r: Recorder) -> None:
    listed(r)
    r.step("merchant", T.DELIST, [1])
    r.step("merchant", T.LIST, [1, "back", 1, 1, 0, 0, "", b""], expect=E.LISTING_INACTIVE.code)


@case("list_window_too_long", "ship_within above the genesis maximum: rejected")
def _(r: Recorder) -> None:
    r.step("merchant", T.LIST, [0, "x", 1, 1, 51, 0, "", b""], expect=E.WINDOW_TOO_LONG.code)


@case("list_confirm_window_too_long", "confirm_within above the genesis maximum: rejected")
def _(r: Recorder) -> None:
    r.step("merchant", T.LIST, [0, "x", 1, 1, 0, 51, "", b""], expect=E.WINDOW_TOO_LONG.code)


@case("list_price_zero", "price 0 is out of range: rejected")
def _(r: Recorder) -> None:
    r.step("merchant", T.LIST, [0, "free", 0, 1, 0, 0, "", b""], expect=E.BAD_BODY.code)


@case("list_title_too_long", "a 129-byte title exceeds max_title_bytes: rejected")
def _(r: Recorder) -> None:
    r.step("merchant", T.LIST, [0, "t" * 129, 1, 1, 0, 0, "", b""], expect=E.FIELD_TOO_LARGE.code)


@case("list_huge_string", "a 100 KB origin string: rejected before decoding further")
def _(r: Recorder) -> None:
    r.step("merchant", T.LIST, [0, "x", 1, 1, 0, 0, "o" * 100_000, b""], expect=E.TX_TOO_LARGE.code)


@case("delist_ok", "the merchant withdraws listing 1")
def _(r: Recorder) -> None:
    listed(r)
    r.step("merchant", T.DELIST, [1])
    r.fact("listing", 1)


@case("delist_not_owner", "only the owner may delist")
def _(r: Recorder) -> None:
    listed(r)
    r.step("alice", T.DELIST, [1], expect=E.NOT_LISTING_OWNER.code)


@case("delist_not_found", "delisting a missing listing")
def _(r: Recorder) -> None:
    r.step("merchant", T.DELIST, [3], expect=E.LISTING_NOT_FOUND.code)


@case("delist_twice", "a listing can be delisted once")
def _(r: Recorder) -> None:
    listed(r)
    r.step("merchant", T.DELIST, [1])
    r.step("merchant", T.DELIST, [1], expect=E.LISTING_INACTIVE.code)


# --- buy -------------------------------------------------------------------------------------------
@case("buy_ok", "alice buys 2 units: 1000 into escrow, inventory 10 -> 8, order PAID")
def _(r: Recorder) -> None:
    ordered(r)
    order_facts(r)
    r.fact("orders_by_buyer", A["alice"])


@case("buy_listing_not_found", "buying a missing listing")
def _(r: Recorder) -> None:
    r.step("alice", T.BUY, [5, 1, 100, None], expect=E.LISTING_NOT_FOUND.code)


@case("buy_inactive", "buying a delisted listing")
def _(r: Recorder) -> None:
    listed(r)
    r.step("merchant", T.DELIST, [1])
    r.step("alice", T.BUY, [1, 1, 500, None], expect=E.LISTING_INACTIVE.code)


@case("buy_self", "a merchant cannot buy its own listing")
def _(r: Recorder) -> None:
    listed(r)
    r.step("merchant", T.BUY, [1, 1, 500, None], expect=E.SELF_PURCHASE.code)


@case("buy_bad_referrer", "the buyer cannot refer itself")
def _(r: Recorder) -> None:
    listed(r)
    r.step("alice", T.BUY, [1, 1, 500, A["alice"]], expect=E.BAD_REFERRER.code)


@case("buy_price_above_limit", "the merchant raised the price; the buyer's limit protects it")
def _(r: Recorder) -> None:
    listed(r)
    r.step("merchant", T.LIST, [1, LISTING[1], 900, 10, 0, 0, LISTING[6], LISTING[7]])
    r.step("alice", T.BUY, [1, 1, 500, None], expect=E.PRICE_ABOVE_LIMIT.code)
    order_facts_accounts(r)


def order_facts_accounts(r: Recorder) -> None:
    r.fact("account", A["alice"])
    r.fact("listing", 1)


@case("buy_insufficient_inventory", "11 units requested, 10 available")
def _(r: Recorder) -> None:
    listed(r)
    r.step("alice", T.BUY, [1, 11, 500, None], expect=E.INSUFFICIENT_INVENTORY.code)
    order_facts_accounts(r)


@case("buy_insufficient_funds", "a buyer with 200 cannot pay 500 (fee charged, nothing else)")
def _(r: Recorder) -> None:
    listed(r)
    r.step("alice", T.TRANSFER, [A["stranger"], 200])
    r.step("stranger", T.BUY, [1, 1, 500, None], expect=E.INSUFFICIENT_FUNDS.code)
    r.fact("account", A["stranger"])
    r.fact("listing", 1)
    r.fact("rewards_pool")


@case("buy_quantity_zero", "quantity 0 is out of range: rejected")
def _(r: Recorder) -> None:
    listed(r)
    r.step("alice", T.BUY, [1, 0, 500, None], expect=E.BAD_BODY.code)


# --- ship / track ---------------------------------------------------------------------------------
@case("ship_ok", "SHIPPED with carrier, tracking id, first checkpoint and a confirm-by height")
def _(r: Recorder) -> None:
    shipped(r)
    r.fact("order", 1)
    r.fact("provenance", 1)


@case("ship_on_deadline", "shipping in the ship-by block itself is still in time")
def _(r: Recorder) -> None:
    ordered(r)  # order at height 2, ship_by = 7
    r.empty(4)  # heights 3..6
    r.step("merchant", T.SHIP, [1, "UPS", "1Z", None, "Neiva", "late but on time"])
    r.fact("order", 1)


@case("ship_not_merchant", "only the order's merchant ships")
def _(r: Recorder) -> None:
    ordered(r)
    r.step("merchant2", T.SHIP, [1, "UPS", "1Z", None, "x", "y"], expect=E.NOT_ORDER_MERCHANT.code)


@case("ship_order_not_found", "shipping a missing order")
def _(r: Recorder) -> None:
    r.step("merchant", T.SHIP, [9, "UPS", "1Z", None, "x", "y"], expect=E.ORDER_NOT_FOUND.code)


@case("ship_twice", "a SHIPPED order cannot ship again")
def _(r: Recorder) -> None:
    shipped(r)
    r.step("merchant", T.SHIP, [1, "UPS", "1Z", None, "x", "y"], expect=E.WRONG_ORDER_STATUS.code)


@case("track_by_carrier", "the carrier named at shipment appends checkpoints")
def _(r: Recorder) -> None:
    shipped(r)
    r.step("carrier", T.TRACK, [1, "Bogota hub", "customs cleared"])
    r.step("merchant", T.TRACK, [1, "Madrid", "arrived"])
    r.fact("provenance", 1)


@case("track_not_carrier", "a stranger cannot add checkpoints")
def _(r: Recorder) -> None:
    shipped(r)
    r.step("bob", T.TRACK, [1, "x", "fake"], expect=E.NOT_CARRIER.code)
    r.fact("provenance", 1)


@case("track_too_many_checkpoints", "max 4 checkpoints per order in these params")
def _(r: Recorder) -> None:
    shipped(r)
    for i in range(3):
        r.step("carrier", T.TRACK, [1, f"stop {i}", ""])
    r.step("carrier", T.TRACK, [1, "one too many", ""], expect=E.TOO_MANY_CHECKPOINTS.code)
    r.fact("order", 1)


@case("track_closed_order", "no checkpoints after completion")
def _(r: Recorder) -> None:
    completed(r)
    r.step("merchant", T.TRACK, [1, "late", ""], expect=E.WRONG_ORDER_STATUS.code)


# --- confirm / cancel / refund ---------------------------------------------------------------------
@case("confirm_ok", "COMPLETED: escrow to the merchant, purchase and referral rewards from the pool")
def _(r: Recorder) -> None:
    shipped(r, referrer=A["referrer"])
    r.step("alice", T.CONFIRM, [1])
    order_facts(r)
    r.fact("account", A["referrer"])


@case("confirm_not_buyer", "only the buyer confirms")
def _(r: Recorder) -> None:
    shipped(r)
    r.step("merchant", T.CONFIRM, [1], expect=E.NOT_ORDER_BUYER.code)


@case("confirm_not_shipped", "a PAID order cannot be confirmed")
def _(r: Recorder) -> None:
    ordered(r)
    r.step("alice", T.CONFIRM, [1], expect=E.WRONG_ORDER_STATUS.code)


@case("cancel_ok", "the buyer cancels before shipment: refund and inventory restored")
def _(r: Recorder) -> None:
    ordered(r)
    r.step("alice", T.CANCEL, [1])
    order_facts(r)


@case("cancel_after_ship", "too late to cancel once shipped")
def _(r: Recorder) -> None:
    shipped(r)
    r.step("alice", T.CANCEL, [1], expect=E.WRONG_ORDER_STATUS.code)


@case("cancel_not_buyer", "only the buyer cancels")
def _(r: Recorder) -> None:
    ordered(r)
    r.step("bob", T.CANCEL, [1], expect=E.NOT_ORDER_BUYER.code)


@case("refund_ok_shipped", "the merchant refunds a shipped order")
def _(r: Recorder) -> None:
    shipped(r)
    r.step("merchant", T.REFUND, [1, "out of stock after all"])
    order_facts(r)


@case("refund_ok_disputed", "the merchant refunds a disputed order")
def _(r: Recorder) -> None:
    disputed(r)
    r.step("merchant", T.REFUND, [1, "sorry"])
    order_facts(r)


@case("refund_not_merchant", "the buyer cannot refund itself")
def _(r: Recorder) -> None:
    shipped(r)
    r.step("alice", T.REFUND, [1, "please"], expect=E.NOT_ORDER_MERCHANT.code)


@case("refund_completed", "no refund after completion")
def _(r: Recorder) -> None:
    completed(r)
    r.step("merchant", T.REFUND, [1, "late"], expect=E.WRONG_ORDER_STATUS.code)


# --- dispute / resolve -----------------------------------------------------------------------------
@case("dispute_ok", "the buyer disputes a shipped order")
def _(r: Recorder) -> None:
    disputed(r)
    r.fact("order", 1)


@case("dispute_paid", "a PAID order cannot be disputed (cancel it instead)")
def _(r: Recorder) -> None:
    ordered(r)
    r.step("alice", T.DISPUTE, [1, "x"], expect=E.WRONG_ORDER_STATUS.code)


@case("dispute_not_buyer", "only the buyer disputes")
def _(r: Recorder) -> None:
    shipped(r)
    r.step("bob", T.DISPUTE, [1, "x"], expect=E.NOT_ORDER_BUYER.code)


@case("dispute_after_auto_release", "after confirm-by the order completed automatically")
def _(r: Recorder) -> None:
    shipped(r)  # shipped at height 3, confirm_by = 8
    r.empty(5)  # heights 4..8; released at the end of 8
    r.step("alice", T.DISPUTE, [1, "too late"], expect=E.WRONG_ORDER_STATUS.code)
    r.fact("order", 1)


@case("resolve_ok", "the arbiter splits the escrow 600/400")
def _(r: Recorder) -> None:
    disputed(r)
    r.step("arbiter", T.RESOLVE, [1, 600, "half the bag was lost"])
    order_facts(r)


@case("resolve_not_arbiter", "only an arbiter resolves")
def _(r: Recorder) -> None:
    disputed(r)
    r.step("alice", T.RESOLVE, [1, 1000, "me"], expect=E.NOT_ARBITER.code)


@case("resolve_split_exceeds", "the buyer share cannot exceed the escrow")
def _(r: Recorder) -> None:
    disputed(r)
    r.step("arbiter", T.RESOLVE, [1, 1001, ""], expect=E.SPLIT_EXCEEDS_ESCROW.code)


@case("resolve_not_disputed", "only DISPUTED orders are resolved")
def _(r: Recorder) -> None:
    shipped(r)
    r.step("arbiter", T.RESOLVE, [1, 0, ""], expect=E.WRONG_ORDER_STATUS.code)


# --- review / reward -------------------------------------------------------------------------------
@case("review_ok", "the buyer reviews a completed order: reputation and review reward")
def _(r: Recorder) -> None:
    completed(r)
    r.step("alice", T.REVIEW, [1, 4, "good beans"])
    r.fact("reviews_by_merchant", A["merchant"])
    r.fact("reputation", A["merchant"])
    r.fact("account", A["alice"])


@case("review_after_resolve", "a RESOLVED order may be reviewed")
def _(r: Recorder) -> None:
    disputed(r)
    r.step("arbiter", T.RESOLVE, [1, 500, ""])
    r.step("alice", T.REVIEW, [1, 2, "half lost"])
    r.fact("reputation", A["merchant"])
    r.fact("reviews_by_listing", 1)


@case("review_twice", "one review per order")
def _(r: Recorder) -> None:
    completed(r)
    r.step("alice", T.REVIEW, [1, 5, "great"])
    r.step("alice", T.REVIEW, [1, 1, "changed my mind"], expect=E.ALREADY_REVIEWED.code)
    r.fact("reputation", A["merchant"])


@case("review_not_completed", "a shipped order cannot be reviewed yet")
def _(r: Recorder) -> None:
    shipped(r)
    r.step("alice", T.REVIEW, [1, 5, "early"], expect=E.REVIEW_NOT_ALLOWED.code)


@case("review_cancelled", "a cancelled order can never be reviewed")
def _(r: Recorder) -> None:
    ordered(r)
    r.step("alice", T.CANCEL, [1])
    r.step("alice", T.REVIEW, [1, 1, "bad"], expect=E.REVIEW_NOT_ALLOWED.code)


@case("review_not_buyer", "only the buyer reviews")
def _(r: Recorder) -> None:
    completed(r)
    r.step("bob", T.REVIEW, [1, 1, "fake"], expect=E.NOT_ORDER_BUYER.code)
    r.fact("reputation", A["merchant"])


@case("review_rating_out_of_range", "rating 6: rejected")
def _(r: Recorder) -> None:
    completed(r)
    r.step("alice", T.REVIEW, [1, 6, "x"], expect=E.BAD_BODY.code)


@case("review_text_too_long", "513-byte review text: rejected")
def _(r: Recorder) -> None:
    completed(r)
    r.step("alice", T.REVIEW, [1, 5, "é" * 257], expect=E.FIELD_TOO_LARGE.code)


@case("reward_ok", "the merchant pays 50 loyalty tokens to its buyer")
def _(r: Recorder) -> None:
    completed(r)
    r.step("merchant", T.REWARD, [1, 50, "thanks"])
    order_facts(r)


@case("reward_not_merchant", "only the order's merchant rewards")
def _(r: Recorder) -> None:
    completed(r)
    r.step("bob", T.REWARD, [1, 50, ""], expect=E.REWARD_NOT_ALLOWED.code)


@case("reward_open_order", "no merchant reward before completion")
def _(r: Recorder) -> None:
    shipped(r)
    r.step("merchant", T.REWARD, [1, 50, ""], expect=E.REWARD_NOT_ALLOWED.code)


@case("reward_insufficient_funds", "the merchant cannot pay more than it holds")
def _(r: Recorder) -> None:
    completed(r)
    r.step("merchant", T.REWARD, [1, 10**9, ""], expect=E.INSUFFICIENT_FUNDS.code)


@case("pool_caps_rewards", "with an empty pool the protocol rewards are capped at what the pool holds",
      lambda: default_params(rewards_pool=0, min_fees=(0,) * 15))
def _(r: Recorder) -> None:
    shipped(r, referrer=A["referrer"])
    r.step("alice", T.CONFIRM, [1])
    r.step("alice", T.REVIEW, [1, 5, ""])
    r.fact("account", A["alice"])
    r.fact("account", A["referrer"])
    r.fact("rewards_pool")


# --- expirations -----------------------------------------------------------------------------------
@case("expire_ship_by", "not shipped by height 7: refunded automatically, inventory restored")
def _(r: Recorder) -> None:
    ordered(r)  # height 2, ship_by 7
    r.empty(5)
    order_facts(r)


@case("expire_ship_by_not_yet", "one block before expiry the order is still PAID")
def _(r: Recorder) -> None:
    ordered(r)
    r.empty(4)
    r.fact("order", 1)


@case("expire_confirm_by", "not confirmed by height 8: released to the merchant with rewards")
def _(r: Recorder) -> None:
    shipped(r)  # shipped at 3, confirm_by 8
    r.empty(5)
    order_facts(r)


@case("expire_dispute_waits", "a disputed order is not released at confirm-by; it waits for the arbiter")
def _(r: Recorder) -> None:
    disputed(r)
    r.empty(8)
    order_facts(r)


@case("expire_many_same_height", "three orders expire in the same block")
def _(r: Recorder) -> None:
    listed(r)
    r.block([(f"{b} buys 1", r.chain.tx(b, T.BUY, [1, 1, 500, None]), 0) for b in ("alice", "bob", "carol")])
    r.empty(5)
    for i in (1, 2, 3):
        r.fact("order", i)
    r.fact("listing", 1)
    r.fact("rewards_pool")


@case("ship_after_deadline", "the order expired, shipping is refused")
def _(r: Recorder) -> None:
    ordered(r)
    r.empty(5)
    r.step("merchant", T.SHIP, [1, "UPS", "1Z", None, "x", "y"], expect=E.WRONG_ORDER_STATUS.code)


# --- validators ------------------------------------------------------------------------------------
def _vote(r: Recorder, voter: str, action: int, pubkey: bytes, power: int, expect: int = 0) -> None:
    r.step(voter, T.VALIDATOR_VOTE, [action, pubkey, power], expect=expect)


@case("vote_add_passes", "3 of 4 equal validators vote to add a fifth: passes, applies at H+2")
def _(r: Recorder) -> None:
    newcomer = PK["stranger"]
    for v in VALIDATOR_NAMES[:3]:
        _vote(r, v, T.VOTE_ADD, newcomer, 7)
    r.fact("validators")
    r.empty(2)
    r.fact("validators")


@case("vote_not_enough", "2 of 4 votes (exactly half) do not pass")
def _(r: Recorder) -> None:
    for v in VALIDATOR_NAMES[:2]:
        _vote(r, v, T.VOTE_ADD, PK["stranger"], 7)
    r.empty(3)
    r.fact("validators")


@case("vote_remove_passes", "3 of 4 vote to remove val4")
def _(r: Recorder) -> None:
    for v in VALIDATOR_NAMES[:3]:
        _vote(r, v, T.VOTE_REMOVE, PK["val4"], 0)
    r.empty(2)
    r.fact("validators")


@case("vote_set_power", "3 of 4 vote to set val1's power to 25")
def _(r: Recorder) -> None:
    for v in VALIDATOR_NAMES[1:]:
        _vote(r, v, T.VOTE_SET_POWER, PK["val1"], 25)
    r.empty(2)
    r.fact("validators")


@case("vote_not_validator", "alice is not a validator")
def _(r: Recorder) -> None:
    _vote(r, "alice", T.VOTE_ADD, PK["alice"], 5, E.NOT_VALIDATOR.code)


@case("vote_duplicate", "voting twice for the same change")
def _(r: Recorder) -> None:
    _vote(r, "val1", T.VOTE_ADD, PK["stranger"], 5)
    _vote(r, "val1", T.VOTE_ADD, PK["stranger"], 5, E.DUPLICATE_VOTE.code)


@case("vote_add_existing", "adding a current validator is not a change")
def _(r: Recorder) -> None:
    _vote(r, "val1", T.VOTE_ADD, PK["val2"], 5, E.INVALID_VALIDATOR_CHANGE.code)


@case("vote_remove_power_nonzero", "remove must carry power 0: rejected")
def _(r: Recorder) -> None:
    _vote(r, "val1", T.VOTE_REMOVE, PK["val2"], 5, E.BAD_BODY.code)


@case("vote_removed_voter_stops_counting", "val4's vote stops counting once val4 is removed")
def _(r: Recorder) -> None:
    _vote(r, "val4", T.VOTE_ADD, PK["stranger"], 5)
    for v in VALIDATOR_NAMES[:3]:
        _vote(r, v, T.VOTE_REMOVE, PK["val4"], 0)
    r.empty(2)  # val4 gone: set is val1..3, total 30
    _vote(r, "val1", T.VOTE_ADD, PK["stranger"], 5)  # 10 of 30 (val4's vote ignored)
    r.fact("validators")


@case("evidence_removes_validator", "duplicate-vote evidence for val2 removes it at H+2")
def _(r: Recorder) -> None:
    r.block([], misbehaving=(PK["val2"],))
    r.fact("validators")
    r.empty(2)
    r.fact("validators")


@case("evidence_never_empties", "evidence against the only validator is ignored",
      lambda: default_params(validators=((PK["val1"], 10),)))
def _(r: Recorder) -> None:
    r.block([], misbehaving=(PK["val1"],))
    r.empty(2)
    r.fact("validators")


# --- a longer story --------------------------------------------------------------------------------
@case("story_mixed_block", "many txs of different senders in one block")
def _(r: Recorder) -> None:
    listed(r)
    c = r.chain
    r.block([
        ("alice buys 1", c.tx("alice", T.BUY, [1, 1, 500, A["referrer"]]), 0),
        ("bob buys 3", c.tx("bob", T.BUY, [1, 3, 600, None]), 0),
        ("carol transfers to dave", c.tx("carol", T.TRANSFER, [A["dave"], 12345]), 0),
        ("dave buys 100 (too many)", c.tx("dave", T.BUY, [1, 100, 500, None]), E.INSUFFICIENT_INVENTORY.code),
        ("merchant2 lists tea", c.tx("merchant2", T.LIST, [0, "Tea", 300, 5, 0, 0, "", b""]), 0),
    ])
    r.block([
        ("merchant ships order 1", c.tx("merchant", T.SHIP, [1, "DHL", "A", None, "x", ""]), 0),
        ("bob cancels order 2", c.tx("bob", T.CANCEL, [2]), 0),
        ("alice confirms bob's order", c.tx("alice", T.CONFIRM, [2]), E.NOT_ORDER_BUYER.code),
    ])
    r.fact("orders_by_merchant", A["merchant"])
    r.fact("listing", 1)
    r.fact("rewards_pool")


def render(name: str, description: str, fn: Callable[[Recorder], None],
           params: Callable[[], GenesisParams] | None) -> dict[str, Any]:
    r = Recorder(params() if params else None)
    fn(r)
    return {
        "name": name,
        "description": description,
        "genesis": r.chain.params.to_dict(),
        "blocks": r.blocks,
        "expect": {"app_hash": app_hash_of(r.chain.state).hex(), "facts": r.facts},
    }


def _arg(value: Any) -> Any:
    return address_to_text(value) if isinstance(value, bytes) and len(value) == 20 else value


def run_query(state: Any, name: str, args: list[Any]) -> Any:
    """Shared with the runner: queries by name with text addresses."""
    from core.address import address_from_text

    conv = [address_from_text(a) if isinstance(a, str) and a.startswith("cm1") else a for a in args]
    calls: dict[str, Callable[..., Any]] = {
        "account": query.account, "listing": query.listing, "order": query.order,
        "provenance": query.provenance, "reputation": query.reputation,
        "validators": query.validators, "rewards_pool": query.rewards_pool,
        "listings": lambda m: query.listings(state, merchant=m),
        "orders_by_buyer": lambda b: query.orders(state, buyer=b),
        "orders_by_merchant": lambda m: query.orders(state, merchant=m),
        "reviews_by_merchant": lambda m: query.reviews(state, merchant=m),
        "reviews_by_listing": lambda i: query.reviews(state, listing_id=i),
    }
    fn = calls[name]
    if name in ("listings", "orders_by_buyer", "orders_by_merchant", "reviews_by_merchant", "reviews_by_listing"):
        return fn(*conv)
    return fn(state, *conv)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    names = [c[0] for c in CASES]
    assert len(names) == len(set(names)), "duplicate case names"
    for old in OUT.glob("*.json"):
        old.unlink()
    for index, (name, description, fn, params) in enumerate(CASES):
        data = render(name, description, fn, params)
        path = OUT / f"{index:03d}_{name}.json"
        path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(CASES)} vectors to {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
