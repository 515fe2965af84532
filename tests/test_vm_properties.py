"""Property tests: random valid and invalid tx sequences keep the VM's invariants.

After every block: total supply is conserved (no issuance after genesis), the escrow total
equals the escrow of open orders, no balance or inventory is negative, every review belongs
to a COMPLETED/RESOLVED order by its buyer, the expiry index (which the app hash leaves out)
is the function of the orders it must be, and the incremental app hash equals a
from-scratch recomputation. Replaying the same blocks from genesis gives the same app hash.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commerce_vm import (
    app_hash_of,
    decode_tx,
    execute_block,
    recompute_app_hash,
)
from commerce_vm import txtypes as T
from commerce_vm.expiry import expected_expiry_index
from commerce_vm.ledger import (
    ACCOUNT,
    ESCROW,
    EXPIRY,
    LISTING,
    ORDER,
    REVIEW,
    Listing,
    Order,
    Review,
    be8,
    load,
    read_int,
    unpack,
)
from tests.vm_helpers import KEYS, Chain, addr, total_supply

ACTORS = ("alice", "bob", "merchant", "merchant2", "carrier", "arbiter", "val1", "stranger")


def _body(kind: int, draw: Any) -> list[Any]:
    small_id = draw(st.integers(1, 4))
    who = addr(KEYS[draw(st.sampled_from(ACTORS))])
    text = draw(st.sampled_from(["", "x", "long" * 40]))
    if kind == T.TRANSFER:
        return [who, draw(st.integers(1, 3_000))]
    if kind == T.LIST:
        return [draw(st.integers(0, 3)), "item", draw(st.integers(1, 900)), draw(st.integers(0, 6)),
                draw(st.integers(0, 4)), draw(st.integers(0, 4)), text, b""]
    if kind == T.DELIST:
        return [small_id]
    if kind == T.BUY:
        return [small_id, draw(st.integers(1, 4)), draw(st.sampled_from([1, 200, 1000, 1000])),
                draw(st.sampled_from([None, addr(KEYS["carol"]), who]))]
    if kind == T.SHIP:
        return [small_id, "DHL", "T1", draw(st.sampled_from([None, addr(KEYS["carrier"])])), "here", text]
    if kind == T.TRACK:
        return [small_id, "loc", text]
    if kind in (T.CONFIRM, T.CANCEL):
        return [small_id]
    if kind in (T.REFUND, T.DISPUTE):
        return [small_id, text]
    if kind == T.RESOLVE:
        return [small_id, draw(st.integers(0, 2_000)), ""]
    if kind == T.REVIEW:
        return [small_id, draw(st.integers(1, 5)), text]
    if kind == T.REWARD:
        return [small_id, draw(st.integers(1, 500)), ""]
    action = draw(st.sampled_from([T.VOTE_ADD, T.VOTE_REMOVE, T.VOTE_SET_POWER]))
    target = KEYS[draw(st.sampled_from(("val1", "val2", "stranger")))].public_key
    return [action, target, 0 if action == T.VOTE_REMOVE else draw(st.integers(1, 20))]


# Weighted so that orders actually progress: buys and ships are common.
KINDS = [T.LIST] * 3 + [T.BUY] * 4 + [T.SHIP] * 3 + [T.CONFIRM] * 2 + [T.REVIEW] * 2 + [
    T.TRANSFER, T.DELIST, T.TRACK, T.CANCEL, T.REFUND, T.DISPUTE, T.RESOLVE, T.REWARD,
    T.VALIDATOR_VOTE,
]


LIKELY: dict[int, tuple[str, ...]] = {
    T.LIST: ("merchant", "merchant2"), T.DELIST: ("merchant", "merchant2"),
    T.BUY: ("alice", "bob"), T.SHIP: ("merchant", "merchant2"), T.TRACK: ("merchant", "carrier"),
    T.CONFIRM: ("alice", "bob"), T.CANCEL: ("alice", "bob"), T.DISPUTE: ("alice", "bob"),
    T.REVIEW: ("alice", "bob"), T.REFUND: ("merchant", "merchant2"), T.RESOLVE: ("arbiter",),
    T.REWARD: ("merchant", "merchant2"), T.VALIDATOR_VOTE: ("val1", "val2", "val3"),
}


def _setup(chain: Chain) -> None:
    """Listings 1-3 and a few orders, so random txs have something to act on."""
    chain.block([
        chain.tx("merchant", T.LIST, [0, "coffee", 300, 20, 3, 3, "", b""]),
        chain.tx("merchant", T.LIST, [0, "tea", 120, 20, 0, 0, "", b""]),
        chain.tx("merchant2", T.LIST, [0, "honey", 450, 20, 9, 9, "", b""]),
    ])
    chain.block([
        chain.tx("alice", T.BUY, [1, 2, 300, None]),
        chain.tx("bob", T.BUY, [2, 1, 120, addr(KEYS["carol"])]),
        chain.tx("alice", T.BUY, [3, 1, 450, None]),
    ])
    chain.block([chain.tx("merchant", T.SHIP, [1, "DHL", "T0", None, "farm", ""])])


@st.composite
def blocks(draw: Any) -> list[list[tuple[str, int, list[Any], int, str]]]:
    out = []
    for _ in range(draw(st.integers(3, 14))):
        txs = []
        for _ in range(draw(st.integers(0, 5))):
            kind = draw(st.sampled_from(KINDS))
            # usually the actor the rule expects, sometimes anyone (to exercise rejections)
            actor = draw(st.sampled_from(LIKELY.get(kind, ACTORS) * 3 + ACTORS))
            # mostly well-formed; sometimes a bad nonce or a fee below the minimum
            flaw = draw(st.sampled_from(["none"] * 8 + ["nonce", "fee"]))
            txs.append((actor, kind, _body(kind, draw), draw(st.integers(10, 30)), flaw))
        out.append(txs)
    return out


def _sign_block(chain: Chain, spec: list[tuple[str, int, list[Any], int, str]]) -> list[bytes]:
    raws = []
    for actor, kind, body, fee, flaw in spec:
        if flaw == "nonce":
            raws.append(chain.tx(actor, kind, body, fee=fee, nonce=chain.nonces.get(actor, 0) + 7))
        elif flaw == "fee":
            raws.append(chain.tx(actor, kind, body, fee=3, nonce=chain.nonces.get(actor, 0)))
        else:
            raws.append(chain.tx(actor, kind, body, fee=fee))
    return raws


def check_invariants(chain: Chain, supply: int) -> None:
    state = chain.state
    assert total_supply(state) == supply, "supply changed"
    for _, value in state.iterate(ACCOUNT):
        assert unpack(value)[0] >= 0
    open_escrow = 0
    for _, value in state.iterate(ORDER):
        order = load(Order, value)
        if order.status in T.OPEN_STATUSES:
            assert order.escrow == order.amount
            open_escrow += order.escrow
        else:
            assert order.escrow == 0
    assert read_int(state, ESCROW) == open_escrow, "escrow total != open orders"
    for _, value in state.iterate(LISTING):
        listing = load(Listing, value)
        assert listing.quantity >= 0 and listing.sold >= 0
    for key, value in state.iterate(REVIEW):
        review = load(Review, value)
        order = load(Order, state.get(ORDER + be8(review.order_id)))
        assert key == REVIEW + be8(order.id)
        assert order.status in T.CLOSED_FOR_REVIEW and order.reviewed
        assert review.buyer == order.buyer
    assert dict(state.iterate(EXPIRY)) == expected_expiry_index(state), "expiry index"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blocks())
def test_random_sequences_keep_invariants(spec: list[list[Any]]) -> None:
    chain = Chain()
    supply = total_supply(chain.state)
    _setup(chain)
    signed: list[list[bytes]] = []
    hashes = []
    for block_spec in spec:
        raws = _sign_block(chain, block_spec)
        result = chain.block(raws)
        for actor in ACTORS:  # rejected txs did not use their nonce: resync from state
            value = chain.state.get(ACCOUNT + addr(KEYS[actor]))
            chain.nonces[actor] = 0 if value is None else unpack(value)[1]
        signed.append(raws)
        hashes.append(result.app_hash)
        check_invariants(chain, supply)
    assert recompute_app_hash(chain.state) == app_hash_of(chain.state)
    # Determinism: the same blocks from the same genesis give the same hashes.
    replay_chain = Chain(chain.params)
    _setup(replay_chain)
    replay = replay_chain.state
    for height, (raws, expected) in enumerate(zip(signed, hashes, strict=True), 4):
        txs = [decode_tx(r, chain.params.chain_id) for r in raws]
        result = execute_block(replay, chain.params, chain.context(height), txs, drop_rejected=True)
        replay.apply(result.changes)
        assert result.app_hash == expected


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["alice", "bob", "carol"]), st.integers(1, 400_000)),
                min_size=1, max_size=12))
def test_transfers_conserve_supply_and_never_overdraw(moves: list[tuple[str, int]]) -> None:
    chain = Chain()
    supply = total_supply(chain.state)
    raws = [chain.tx(sender, T.TRANSFER, [addr(KEYS["dave"]), amount]) for sender, amount in moves]
    result = chain.block(raws)
    assert all(r.included for r in result.results)
    assert total_supply(chain.state) == supply
    for name in ("alice", "bob", "carol"):
        assert chain.balance(name) >= 0
