"""Unit tests: app-hash proofs, state overlay, params, block entry point, queries, docs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from commerce_vm import (
    ALL_ERRORS,
    EMPTY_APP_HASH,
    BlockInvalid,
    GenesisParams,
    MemoryState,
    Overlay,
    ParamsError,
    app_hash_of,
    decode_tx,
    execute_block,
    genesis_changes,
    genesis_state,
    prove,
    query,
    recompute_app_hash,
    verify_state_proof,
)
from commerce_vm import errors as E
from commerce_vm import txtypes as T
from commerce_vm.apphash import committed, update_app_hash
from commerce_vm.ledger import (
    ACCOUNT,
    EXPIRY,
    ORDER,
    ORDER_BY_BUYER,
    ORDER_BY_MERCHANT,
    POOL,
    REVIEW_BY_LISTING,
    UNCOMMITTED_PREFIXES,
    Checkpoint,
    Listing,
    Order,
    Reputation,
    Review,
    be8,
    load,
    pack,
)
from commerce_vm.proof import key_hash
from core.address import address_to_text
from core.encoding import encode
from tests.vm_helpers import KEYS, Chain, addr, default_params, overlay_with

ROOT = Path(__file__).resolve().parents[1]
BOB = addr(KEYS["bob"])


# --- app hash and proofs ------------------------------------------------------------------
def _story() -> Chain:
    chain = Chain()
    chain.run("merchant", T.LIST, [0, "Coffee", 500, 10, 0, 0, "Huila", b""])
    chain.run("alice", T.BUY, [1, 2, 500, None])
    chain.run("alice", T.TRANSFER, [BOB, 77])
    return chain


def test_membership_proof() -> None:
    chain = _story()
    root = app_hash_of(chain.state)
    key = ACCOUNT + BOB
    value = chain.state.get(key)
    assert value is not None
    proof = prove(chain.state, key)
    assert verify_state_proof(root, key, value, proof)
    assert not verify_state_proof(root, key, value + b"\x00", proof)  # wrong value
    assert not verify_state_proof(root, key, None, proof)  # claims absence of a present key
    assert not verify_state_proof(b"\x00" * 32, key, value, proof)  # wrong root


def test_absence_proof() -> None:
    chain = _story()
    root = app_hash_of(chain.state)
    key = ACCOUNT + b"\x42" * 20
    proof = prove(chain.state, key)
    assert verify_state_proof(root, key, None, proof)
    assert not verify_state_proof(root, key, b"\x01", proof)


def test_tampered_proofs_are_rejected() -> None:
    chain = _story()
    root = app_hash_of(chain.state)
    key = ACCOUNT + BOB
    value = chain.state.get(key)
    proof = prove(chain.state, key)
    for part in range(len(proof)):
        for offset in (0, len(proof[part]) // 2, len(proof[part]) - 1):
            if not proof[part]:
                continue
            bad = list(proof)
            mutated = bytearray(bad[part])
            mutated[offset] ^= 1
            bad[part] = bytes(mutated)
            assert not verify_state_proof(root, key, value, bad), (part, offset)
    assert not verify_state_proof(root, key, value, proof[:-1])
    assert not verify_state_proof(root, key, value, "garbage")
    assert not verify_state_proof(root, key, value, [b""] * 5)
    # dropping the pair from the bucket would "prove" absence: must fail
    bucket = proof[0]
    without = list(proof)
    without[0] = b"".join(bucket[i:i + 64] for i in range(0, len(bucket), 64)
                          if bucket[i:i + 32] != key_hash(key))
    assert not verify_state_proof(root, key, None, without)


def test_proof_module_imports_only_core() -> None:
    source = (ROOT / "commerce_vm" / "proof.py").read_text()
    imports = re.findall(r"^(?:from|import) ([\w.]+)", source, re.M)
    assert all(name in ("__future__", "typing") or name.startswith("core") for name in imports)


def test_empty_state_hash_and_genesis() -> None:
    assert app_hash_of(MemoryState()) == EMPTY_APP_HASH
    params = default_params()
    changes, root = genesis_changes(params)
    state = genesis_state(params)
    assert app_hash_of(state) == root == recompute_app_hash(state)
    assert changes == sorted(changes)
    assert query.params(state) == params.to_dict()


_KEYS = (st.binary(min_size=1, max_size=6).filter(lambda k: k[:1] != b"~")
         | st.builds(bytes.__add__, st.sampled_from(UNCOMMITTED_PREFIXES),
                     st.binary(max_size=3)))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.tuples(_KEYS, st.none() | st.binary(max_size=8)), max_size=30),
                min_size=1, max_size=5))
def test_incremental_hash_equals_from_scratch(batches) -> None:
    state = MemoryState()
    for batch in batches:
        overlay = overlay_with(state, batch)
        root = update_app_hash(overlay, list(overlay.writes.items()))
        state.apply(overlay.changes())
        assert root == app_hash_of(state) == recompute_app_hash(state)
        for key, _ in batch[:3]:
            if committed(key):
                assert verify_state_proof(root, key, state.get(key), prove(state, key))
            else:
                with pytest.raises(ValueError):
                    prove(state, key)


def test_secondary_indexes_are_not_committed_and_records_are() -> None:
    chain = _story()
    root = app_hash_of(chain.state)
    order_key = ORDER_BY_BUYER + addr(KEYS["alice"]) + be8(1)
    assert chain.state.get(order_key) == b""  # the buy wrote it
    for key in (order_key, ORDER_BY_MERCHANT + b"\x01" * 28, REVIEW_BY_LISTING + be8(9) * 2,
                EXPIRY + be8(7) + be8(1)):
        overlay = Overlay(chain.state)
        overlay.put(key, b"")
        assert update_app_hash(overlay, list(overlay.writes.items())) == root, key
    for key in (ORDER + be8(1), b"o/", b"ob", b"x", b"vv/" + b"\x00" * 64):  # records
        overlay = Overlay(chain.state)
        overlay.put(key, b"\x00")
        assert update_app_hash(overlay, list(overlay.writes.items())) != root, key


def test_every_committed_key_changes_the_hash() -> None:
    chain = _story()
    root = app_hash_of(chain.state)
    overlay = Overlay(chain.state)
    overlay.put(POOL, b"\x00")
    assert update_app_hash(overlay, [(POOL, b"\x00")]) != root


# --- state ------------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.binary(max_size=3), st.binary(max_size=2), max_size=20),
       st.dictionaries(st.binary(max_size=3), st.none() | st.binary(max_size=2), max_size=20),
       st.binary(max_size=2), st.none() | st.binary(max_size=3), st.booleans())
def test_overlay_iterate_matches_a_model(base, writes, prefix, start, reverse) -> None:
    state = MemoryState(base.items())
    overlay = Overlay(state)
    for key, value in writes.items():
        overlay.writes[key] = value
    model = {**base, **writes}
    expected = sorted(((k, v) for k, v in model.items() if v is not None and k.startswith(prefix)
                       and (start is None or (k <= start if reverse else k >= start))),
                      reverse=reverse)
    assert list(overlay.iterate(prefix, start, reverse)) == expected
    merged = MemoryState(base.items())
    merged.apply(overlay.changes())
    assert list(merged.iterate(prefix, start, reverse)) == expected


def test_memory_state_prefix_edges() -> None:
    state = MemoryState([(b"\xff", b"1"), (b"\xff\xff", b"2"), (b"\xfe\xff", b"3"), (b"a", b"4")])
    assert [k for k, _ in state.iterate(b"\xff")] == [b"\xff", b"\xff\xff"]
    assert [k for k, _ in state.iterate(b"\xfe")] == [b"\xfe\xff"]
    assert len(list(state.iterate(b""))) == 4


# --- params -----------------------------------------------------------------------------------
def test_params_round_trip_and_validation() -> None:
    params = default_params()
    assert GenesisParams.from_dict(params.to_dict()) == params
    assert GenesisParams.from_list(params.to_list()) == params
    data = params.to_dict()
    bad_cases = [
        {**data, "chain_id": "Bad Chain"},
        {**data, "validators": []},
        {**data, "purchase_reward_bps": 10_001},
        {**data, "default_ship_within": data["max_ship_within"] + 1},
        {**data, "min_fees": {"teleport": 1}},
        {**data, "initial_balances": {"cm1notanaddress": 5}},
        {**data, "rewards_pool": -1},
        {**data, "review_reward": 1.5},
        {**data, "surprise": 1},
        {**data, "rewards_pool": 2**63 - 1},  # total supply overflow
    ]
    for bad in bad_cases:
        with pytest.raises(ParamsError):
            GenesisParams.from_dict(bad)


# --- block entry point ------------------------------------------------------------------------
def test_block_is_deterministic_and_base_untouched() -> None:
    chain = _story()
    raws = [chain.tx("merchant", T.SHIP, [1, "DHL", "X", None, "a", "b"]),
            chain.tx("bob", T.TRANSFER, [addr(KEYS["carol"]), 5])]
    txs = [decode_tx(r, chain.params.chain_id) for r in raws]
    before = chain.state.items()
    one = execute_block(chain.state, chain.params, chain.context(), txs, drop_rejected=False)
    two = execute_block(chain.state, chain.params, chain.context(), txs, drop_rejected=False)
    assert chain.state.items() == before
    assert one.app_hash == two.app_hash and one.changes == two.changes
    assert one.results == two.results
    assert [k for k, _ in one.changes] == sorted(k for k, _ in one.changes)


def test_validator_mode_rejects_block_with_rejected_tx() -> None:
    chain = _story()
    good = chain.tx("bob", T.TRANSFER, [addr(KEYS["carol"]), 5])
    replay = chain.tx("bob", T.TRANSFER, [addr(KEYS["carol"]), 5], nonce=0)
    txs = [decode_tx(r, chain.params.chain_id) for r in (good, replay)]
    with pytest.raises(BlockInvalid) as info:
        execute_block(chain.state, chain.params, chain.context(), txs, drop_rejected=False)
    assert info.value.index == 1 and info.value.error.code == E.BAD_NONCE.code
    proposal = execute_block(chain.state, chain.params, chain.context(), txs, drop_rejected=True)
    assert proposal.included == [txs[0]]
    assert [r.included for r in proposal.results] == [True, False]


def test_failed_tx_charges_fee_and_nothing_else() -> None:
    chain = _story()
    pool_before = query.rewards_pool(chain.state)["pool"]
    balance_before = chain.balance("bob")
    result = chain.run("bob", T.CONFIRM, [1])  # bob is not the buyer
    assert result.included and result.code == E.NOT_ORDER_BUYER.code and result.fee_charged == 10
    assert chain.balance("bob") == balance_before - 10
    assert query.account(chain.state, BOB)["nonce"] == 1
    assert query.rewards_pool(chain.state)["pool"] == pool_before + 10
    assert query.order(chain.state, 1)["status"] == "PAID"
    assert [k for k, _ in chain.last.changes if not k.startswith(b"~")] == [ACCOUNT + BOB, POOL]


def test_evidence_removal_updates_and_applies_two_heights_later() -> None:
    chain = Chain()
    target = KEYS["val3"].public_key
    result = chain.block([], misbehaving=(target, target))
    assert result.validator_updates == [(target, 0)]
    assert len(query.validators(chain.state)["validators"]) == 4
    chain.block([])
    assert len(query.validators(chain.state)["validators"]) == 4
    chain.block([])  # height 3 = 1 + 2
    assert target.hex() not in {v["pub_key"] for v in query.validators(chain.state)["validators"]}


def test_vote_passes_only_above_two_thirds() -> None:
    chain = Chain(default_params(validators=tuple(sorted(
        [(KEYS["val1"].public_key, 40), (KEYS["val2"].public_key, 30), (KEYS["val3"].public_key, 30)]))))
    new = KEYS["stranger"].public_key
    chain.run("val1", T.VALIDATOR_VOTE, [T.VOTE_ADD, new, 5])
    chain.run("val2", T.VALIDATOR_VOTE, [T.VOTE_ADD, new, 5])  # 70/100 > 2/3
    assert chain.last.validator_updates == [(new, 5)]
    late = chain.run("val3", T.VALIDATOR_VOTE, [T.VOTE_ADD, new, 5])  # already pending
    assert late.code == E.INVALID_VALIDATOR_CHANGE.code


def test_cannot_vote_to_remove_last_validator() -> None:
    chain = Chain(default_params(validators=((KEYS["val1"].public_key, 10),)))
    result = chain.run("val1", T.VALIDATOR_VOTE, [T.VOTE_REMOVE, KEYS["val1"].public_key, 0])
    assert result.code == E.INVALID_VALIDATOR_CHANGE.code


# --- queries ----------------------------------------------------------------------------------
def test_pagination() -> None:
    chain = Chain()
    chain.block([chain.tx("merchant", T.LIST, [0, f"item {i}", 10 + i, 5, 0, 0, "", b""]) for i in range(7)])
    merchant = addr(KEYS["merchant"])
    page = query.listings(chain.state, merchant=merchant, limit=3)
    assert [x["id"] for x in page["items"]] == [1, 2, 3] and page["next_cursor"] == 4
    page = query.listings(chain.state, merchant=merchant, limit=3, cursor=page["next_cursor"])
    assert [x["id"] for x in page["items"]] == [4, 5, 6] and page["next_cursor"] == 7
    page = query.listings(chain.state, merchant=merchant, limit=3, cursor=7)
    assert [x["id"] for x in page["items"]] == [7] and page["next_cursor"] is None
    assert query.listings(chain.state, merchant=addr(KEYS["bob"]))["items"] == []
    for bad in (0, 101, "3", True):
        with pytest.raises(ValueError):
            query.listings(chain.state, limit=bad)
    assert query.listing(chain.state, 99) is None and query.order(chain.state, 1) is None
    assert query.provenance(chain.state, 1) is None
    assert query.account(chain.state, addr(KEYS["stranger"]))["balance"] == 0
    assert query.reputation(chain.state, merchant)["average_milli"] == 0


def test_reputation_is_value_weighted_integer() -> None:
    chain = Chain()
    chain.run("merchant", T.LIST, [0, "cheap", 100, 10, 0, 0, "", b""])
    chain.run("merchant", T.LIST, [0, "dear", 300, 10, 0, 0, "", b""])
    for listing_id, rating in ((1, 1), (2, 4)):
        chain.run("alice", T.BUY, [listing_id, 1, 1000, None])
        order_id = listing_id
        chain.run("merchant", T.SHIP, [order_id, "c", "t", None, "l", ""])
        chain.run("alice", T.CONFIRM, [order_id])
        chain.run("alice", T.REVIEW, [order_id, rating, ""])
    rep = query.reputation(chain.state, addr(KEYS["merchant"]))
    assert rep["count"] == 2 and rep["weight_sum"] == 400
    assert rep["average_milli"] == (1 * 100 + 4 * 300) * 1000 // 400 == 3250
    assert query.orders(chain.state, buyer=addr(KEYS["alice"]))["items"][1]["status"] == "COMPLETED"
    assert len(query.reviews(chain.state, merchant=addr(KEYS["merchant"]))["items"]) == 2


# --- docs -------------------------------------------------------------------------------------
def test_errors_doc_lists_every_code() -> None:
    text = (ROOT / "docs" / "errors.md").read_text()
    for kind in ALL_ERRORS:
        assert f"| {kind.code} | `{kind.name}` |" in text, kind.name
    assert len({k.code for k in ALL_ERRORS}) == len(ALL_ERRORS)
    assert all((k.code < 300) == k.rejects for k in ALL_ERRORS)


def test_addresses_in_queries_are_text() -> None:
    chain = _story()
    assert query.order(chain.state, 1)["buyer"] == address_to_text(addr(KEYS["alice"]))


def test_vm_has_no_sources_of_nondeterminism() -> None:
    import ast

    forbidden = {"time", "random", "asyncio", "threading", "socket", "os", "datetime", "secrets"}
    for path in (ROOT / "commerce_vm").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module.split(".")[0]]
            else:
                continue
            assert not forbidden & set(names), f"{path.name} imports {names}"
            assert not {"storage", "consensus", "p2p", "node"} & set(names), path.name
        assert not any(isinstance(n, ast.Constant) and isinstance(n.value, float) for n in ast.walk(tree)), path.name


def test_every_record_packs_as_the_array_of_its_fields_in_order() -> None:
    records = [
        Listing(7, b"m" * 20, "mug", 100, 5, 10, 20, "Porto", b"\x01", True, 3, 4, 1),
        Order(9, 7, b"b" * 20, b"m" * 20, 2, 100, 200, 200, 1, 3, 13, 20, 0, "ups", "t1",
              None, b"r" * 20, 1, False, 0, 0),
        Checkpoint(5, b"m" * 20, "shipped", "Porto", "note"),
        Review(9, 7, b"b" * 20, b"m" * 20, 5, "great", 6, 200),
        Reputation(1, 5, 1000, 200),
    ]
    for record in records:
        fields = [getattr(record, name) for name in record.__slots__]
        assert pack(record) == encode(fields)
        assert load(type(record), pack(record)) == record
