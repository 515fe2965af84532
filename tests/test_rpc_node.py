"""The JSON-RPC surface of a real node, in-process: every method on a live chain, bad input
of every kind (and fuzzed bodies) that must leave the node unchanged and working, and a
mempool flood through RPC that must respect the pool's limits and lose nothing accepted."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import commerce_vm as vm
from commerce_vm import errors as E
from commerce_vm import txtypes as T
from core.address import address_from_text
from core.hashing import sha256
from core.keys import PrivateKey
from core.merkle import verify_inclusion
from node.rpc.errors import COMMIT_TIMEOUT, MEMPOOL_FULL, TX_ALREADY_KNOWN
from tests.node_fixtures import LiveNode, live_node, node_factory  # noqa: F401

FEE = 10
LISTING_PRICE = 250
STOCK = 5


def listing_body(title: str, price: int = LISTING_PRICE, quantity: int = STOCK) -> list[Any]:
    return [0, title, price, quantity, 0, 0, "Kyoto, Japan; hand-thrown", b"\x01\x02"]


def assert_vm_error(error: dict[str, Any], kind: E.ErrorKind) -> None:
    assert error["code"] == kind.code, error
    assert error["data"] == {"name": kind.name, "rule": kind.rule}, error
    assert isinstance(error["message"], str) and error["message"]


async def commit(live: LiveNode, raw_hex: str) -> dict[str, Any]:
    result = await live.rpc("broadcast_tx_commit", tx=raw_hex)
    assert result["code"] == 0, result
    return result


async def run_story(live: LiveNode) -> dict[str, Any]:
    """Two listings, a buy that ships (with a checkpoint), confirms and gets reviewed, and a
    transfer; submitted through all three broadcast flavours."""
    m, b = "merchant", "buyer"
    first = await commit(live, live.sign(m, T.LIST, 0, listing_body("Tea bowl")))
    await commit(live, live.sign(m, T.LIST, 1, listing_body("Teapot", price=900)))
    buy = live.sign(b, T.BUY, 0, [1, 2, LISTING_PRICE, None])
    synced = await live.rpc("broadcast_tx_sync", tx=buy)
    assert synced == {"hash": sha256(bytes.fromhex(buy)).hex(), "code": 0, "status": "pooled"}
    # Pending txs count in next_nonce, not in the committed nonce.
    account = await live.rpc("account", address=live.addr(b))
    assert (account["nonce"], account["next_nonce"]) in ((0, 1), (1, 1))
    await commit(live, live.sign(m, T.SHIP, 2, [1, "Yamato", "TRK-1", None, "Kyoto", "packed"]))
    await commit(live, live.sign(m, T.TRACK, 3, [1, "Osaka hub", "in transit"]))
    await commit(live, live.sign(b, T.CONFIRM, 1, [1]))
    review = await commit(live, live.sign(b, T.REVIEW, 2, [1, 5, "lovely glaze"]))
    transfer = live.sign(b, T.TRANSFER, 3, [address_from_text(live.addr("arbiter")), 1234])
    queued = await live.rpc("broadcast_tx_async", tx=transfer)
    assert queued == {"hash": sha256(bytes.fromhex(transfer)).hex()}
    transfer_hash = queued["hash"]
    for _ in range(500):
        if "error" not in await live.call("tx", {"hash": transfer_hash}):
            break
        await asyncio.sleep(0.02)
    return {"first": first, "review": review, "transfer_hash": transfer_hash}


async def test_every_method_on_a_live_chain(node_factory):  # noqa: F811
    live = await node_factory(backend="leveldb")
    await live.wait_height(1)
    story = await run_story(live)
    merchant, buyer, arbiter = (live.addr(n) for n in ("merchant", "buyer", "arbiter"))

    status = await live.rpc("status")
    top = status["sync_info"]["latest_block_height"]
    assert status["node_info"]["chain_id"] == live.chain_id
    assert top >= story["review"]["height"] and status["validator_info"]["power"] == 10
    health = await live.rpc("health")
    assert health["healthy"] is True and health["fault"] is None
    assert await live.rpc("net_info") == {"listening": False, "node_id": None, "n_peers": 0,
                                          "peers": []}  # this fixture runs without p2p
    genesis = await live.rpc("genesis")
    assert genesis["params"]["chain_id"] == live.chain_id
    assert merchant in genesis["params"]["initial_balances"]

    # Blocks: latest, by height, by hash, ranges, commits.
    latest = await live.rpc("block")
    assert latest["header"]["height"] >= top
    h = story["first"]["height"]
    block = await live.rpc("block", height=h)
    assert block["header"]["height"] == h
    assert any(t.get("type") == "list" for t in block["txs"])
    assert await live.rpc("block", height=str(h)) == block  # CometBFT-style string heights
    assert await live.rpc("block_by_hash", hash=block["header"]["hash"]) == block
    assert await live.rpc("block_by_hash", hash="0x" + block["header"]["hash"]) == block
    # hashes only: the same block, each tx as its hash
    light = await live.rpc("block", height=h, hashes_only=True)
    assert light["txs"] == [t["hash"] for t in block["txs"]] and light["txs"]
    assert {k: v for k, v in light.items() if k != "txs"} == \
        {k: v for k, v in block.items() if k != "txs"}
    assert await live.rpc("block_by_hash", hash=block["header"]["hash"],
                          hashes_only=True) == light
    chain = await live.rpc("blockchain", min_height=1, max_height=3)
    assert [x["height"] for x in chain["headers"]] == [3, 2, 1]
    assert chain["headers"][1]["prev_hash"] == chain["headers"][2]["hash"]
    assert chain["headers"][0]["prev_hash"] == chain["headers"][1]["hash"]
    wide = await live.rpc("blockchain")
    assert 1 <= len(wide["headers"]) <= 20 and wide["headers"][0]["height"] == wide["last_height"]
    cert = await live.rpc("commit", height=h)
    assert cert["commit"]["block_hash"] == block["header"]["hash"]
    assert cert["commit"]["height"] == h and len(cert["commit"]["signatures"]) == 1
    assert (await live.rpc("commit"))["header"]["height"] >= top
    validators = await live.rpc("validators")
    assert validators["total_power"] == 10 and len(validators["validators"]) == 1
    assert validators["validators"][0]["pub_key"] == status["validator_info"]["pub_key"]
    assert (await live.rpc("validators", height=1))["height"] == 1

    # tx with an inclusion proof checked against the header's txs_root.
    review = story["review"]
    found = await live.rpc("tx", hash=review["hash"], prove=True)
    assert (found["height"], found["index"]) == (review["height"], review["index"])
    assert found["result"]["code"] == 0 and found["result"]["type"] == "review"
    assert found["tx"]["body"]["rating"] == 5
    proof = found["proof"]
    header = (await live.rpc("block", height=found["height"]))["header"]
    assert proof["txs_root"] == header["txs_root"]
    raw = bytes.fromhex(found["tx"]["raw"])
    aunts = [bytes.fromhex(a) for a in proof["aunts"]]
    root = bytes.fromhex(header["txs_root"])
    assert verify_inclusion(raw, proof["index"], proof["total"], aunts, root)
    assert not verify_inclusion(raw + b"x", proof["index"], proof["total"], aunts, root)
    assert "proof" not in await live.rpc("tx", hash=review["hash"])
    assert (await live.rpc("tx", hash=story["transfer_hash"]))["tx"]["type"] == "transfer"

    # tx_search: by account with a cursor, by type, by height.
    everything = await live.rpc("tx_search", account=buyer, limit=100)
    assert everything["next_cursor"] is None and len(everything["txs"]) == 5
    positions = [(t["height"], t["index"]) for t in everything["txs"]]
    assert positions == sorted(positions, reverse=True)  # newest first
    paged, cursor = [], None
    while True:
        page = await live.rpc("tx_search", account=buyer, limit=2,
                              **({"cursor": cursor} if cursor else {}))
        assert len(page["txs"]) <= 2
        paged += page["txs"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [t["hash"] for t in paged] == [t["hash"] for t in everything["txs"]]
    lists = await live.rpc("tx_search", type="list")
    assert [t["tx"]["type"] for t in lists["txs"]] == ["list", "list"]
    at_height = await live.rpc("tx_search", height=h)
    assert story["first"]["hash"] in [t["hash"] for t in at_height["txs"]]
    assert (await live.rpc("tx_search", account=arbiter))["txs"][0]["hash"] == \
        story["transfer_hash"]

    # Mempool views (their exact counts are checked in test_next_nonce_counts_mempool_txs).
    assert (await live.rpc("num_unconfirmed_txs"))["n_txs"] >= 0
    pending = live.sign("arbiter", T.TRANSFER, 0, [address_from_text(merchant), 5])
    assert (await live.rpc("broadcast_tx_sync", tx=pending))["code"] == 0
    unconfirmed = await live.rpc("unconfirmed_txs", limit=5)
    assert unconfirmed["n_txs"] >= len(unconfirmed["txs"])

    # Commerce queries.
    account = await live.rpc("account", address=buyer)
    assert account["nonce"] == 4 and account["next_nonce"] == 4
    paid = 2 * LISTING_PRICE + 1234 + 5 * FEE
    # Paid for goods, transfer and fees; protocol rewards (from the pool) may come back.
    assert 1_000_000_000 - paid <= account["balance"] < 1_000_000_000 - paid + 5 * FEE
    listing = await live.rpc("listing", id=1)
    assert listing["title"] == "Tea bowl"
    all_listings = await live.rpc("listings", merchant=merchant, limit=1)
    assert len(all_listings["items"]) == 1 and all_listings["next_cursor"] == 2
    rest = await live.rpc("listings", merchant=merchant, limit=1, cursor=2)
    assert [x["title"] for x in rest["items"]] == ["Teapot"] and rest["next_cursor"] is None
    assert (await live.rpc("listings", merchant=arbiter))["items"] == []
    assert len((await live.rpc("listings"))["items"]) == 2
    order = await live.rpc("order", id=1)
    assert order["status"] == "COMPLETED" and order["quantity"] == 2
    for by in ({"buyer": buyer}, {"merchant": merchant}, {"listing": 1}):
        assert [o["id"] for o in (await live.rpc("orders", **by))["items"]] == [1]
    reviews = await live.rpc("reviews", merchant=merchant)
    assert [r["rating"] for r in reviews["items"]] == [5]
    assert (await live.rpc("reviews", listing=2))["items"] == []
    reputation = await live.rpc("reputation", merchant=merchant)
    assert reputation["count"] == 1 and reputation["rating_sum"] == 5
    trail = await live.rpc("provenance", order=1)
    assert trail["listing"]["origin"].startswith("Kyoto")
    assert [(c["kind"], c["location"], c["actor"]) for c in trail["checkpoints"]] == \
        [("shipped", "Kyoto", merchant), ("checkpoint", "Osaka hub", merchant)]
    assert (trail["status"], trail["carrier"], trail["tracking_id"]) == \
        ("COMPLETED", "Yamato", "TRK-1")
    pool = await live.rpc("rewards_pool")
    assert pool["escrow"] == 0 and pool["pool"] > 0
    params = await live.rpc("params")
    assert json.dumps(params)  # JSON-serialisable


async def test_next_nonce_counts_mempool_txs_and_commit_times_out(node_factory):  # noqa: F811
    live = await node_factory(overrides={("rpc", "commit_timeout_ms"): 300})
    await live.wait_height(1)
    # Stop the proposer from reaping: pool txs stay pending while we look.
    live.node.driver.max_block_txs = 0
    buyer = live.addr("buyer")
    to = address_from_text(live.addr("arbiter"))
    # nonce 2 before 1: accepted, but parked, and the answer says which nonce it waits for
    answers = {}
    for nonce in (0, 2, 1):
        answers[nonce] = await live.rpc("broadcast_tx_sync",
                                        tx=live.sign("buyer", T.TRANSFER, nonce, [to, 1]))
        assert answers[nonce]["code"] == 0
        if nonce == 2:
            assert (await live.rpc("account", address=buyer))["next_nonce"] == 1
    assert answers[0]["status"] == answers[1]["status"] == "pooled"
    assert answers[2]["status"] == "parked" and answers[2]["waiting_for_nonce"] == 1
    assert "waiting_for_nonce" not in answers[0]
    account = await live.rpc("account", address=buyer)
    assert (account["nonce"], account["next_nonce"]) == (0, 3)  # nonce 1 unparked nonce 2
    assert (await live.rpc("num_unconfirmed_txs"))["n_txs"] == 3
    unconfirmed = await live.rpc("unconfirmed_txs", limit=2)
    assert unconfirmed["n_txs"] == 3 and [t["nonce"] for t in unconfirmed["txs"]] == [0, 1]
    # broadcast_tx_commit gives up after commit_timeout_ms, naming the tx, and forgets it.
    late = live.sign("buyer", T.TRANSFER, 3, [to, 1])
    timeout = await live.error("broadcast_tx_commit", {"tx": late})
    assert timeout["code"] == COMMIT_TIMEOUT
    assert timeout["data"] == {"hash": sha256(bytes.fromhex(late)).hex()}
    assert live.node.events.waiters == {}
    live.node.driver.max_block_txs = 5000
    height = live.node.engine.chain.last_height
    await live.wait_height(height + 2)
    account = await live.rpc("account", address=buyer)
    assert (account["nonce"], account["next_nonce"]) == (4, 4)
    assert (await live.rpc("tx", hash=sha256(bytes.fromhex(late)).hex()))["result"]["code"] == 0


# --- bad input ------------------------------------------------------------------------------


async def snapshot(live: LiveNode) -> dict[str, Any]:
    height = live.node.engine.chain.last_height
    block = await live.rpc("block", height=height)
    balances = {n: (await live.rpc("account", address=live.addr(n)))
                for n in ("merchant", "buyer", "arbiter")}
    return {"height": height, "app_hash": block["header"]["app_hash"],
            "block_hash": block["header"]["hash"], "balances": balances,
            "pool": await live.rpc("rewards_pool"), "listings": await live.rpc("listings")}


async def assert_unchanged_and_alive(live: LiveNode, before: dict[str, Any]) -> None:
    assert (await live.rpc("health"))["healthy"] is True
    assert live.node.driver.fault is None
    await live.wait_height(live.node.engine.chain.last_height + 2)  # blocks keep coming
    block = await live.rpc("block", height=before["height"])
    assert block["header"]["app_hash"] == before["app_hash"]
    assert block["header"]["hash"] == before["block_hash"]
    now = await snapshot(live)
    assert now["app_hash"] == before["app_hash"]  # idle blocks do not change the state
    for key in ("balances", "pool", "listings"):
        assert now[key] == before[key], key
    assert (await live.rpc("num_unconfirmed_txs"))["n_txs"] == 0
    assert live.node.events.waiters == {}  # no RPC waiter left behind


async def test_protocol_errors(live_node):  # noqa: F811
    live = live_node
    for body in (b"{not json", b"\xff\xfe\x00", b"", b"[1,", b"NaN", b"[-Infinity]",
                 b"[" * 200_000, b'{"a":' * 100_000):
        status, reply = await live.post(body)
        assert status == 200 and reply["error"]["code"] == -32700 and reply["id"] is None
    for request in ({"jsonrpc": "1.0", "id": 1, "method": "status"},
                    {"id": 1, "method": "status"}, [1], 5, "status", None,
                    {"jsonrpc": "2.0", "id": 1}, {"jsonrpc": "2.0", "id": 1, "method": 7},
                    {"jsonrpc": "2.0", "id": [1], "method": "status"},
                    {"jsonrpc": "2.0", "id": True, "method": "status"}, []):
        status, reply = await live.post(json.dumps(request))
        assert status == 200
        replies = reply if isinstance(reply, list) else [reply]
        assert [r["error"]["code"] for r in replies] == [-32600], request
    limit = live.node.config.get("rpc", "max_batch_requests")
    ok_batch = [{"jsonrpc": "2.0", "id": i, "method": "health"} for i in range(limit)]
    status, reply = await live.post(json.dumps(ok_batch))
    assert sorted(r["id"] for r in reply) == list(range(limit))
    status, reply = await live.post(json.dumps(ok_batch + [ok_batch[0]]))
    assert status == 200 and reply["error"]["code"] == -32600
    # A batch mixing good, bad and notifications answers each request that has an id.
    mixed = [{"jsonrpc": "2.0", "id": 1, "method": "health"},
             {"jsonrpc": "2.0", "id": 2, "method": "nope"},
             {"jsonrpc": "2.0", "method": "health"}, 17]
    status, reply = await live.post(json.dumps(mixed))
    assert [("result" in r, r.get("error", {}).get("code")) for r in reply] == \
        [(True, None), (False, -32601), (False, -32600)]
    status, reply = await live.post(json.dumps({"jsonrpc": "2.0", "method": "health"}))
    assert status == 204 and reply is None
    assert (await live.error("no_such_method"))["code"] == -32601
    assert (await live.error("x" * 10_000))["message"].endswith("x" * 8)  # echoed, bounded
    assert len((await live.error("x" * 10_000))["message"]) < 200

    # Oversized body: HTTP 413 with a JSON-RPC error, whether or not the length is declared.
    max_body = live.node.config.get("rpc", "max_body_bytes")
    big = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "broadcast_tx_sync",
                      "params": {"tx": "00" * max_body}})
    status, reply = await live.post(big)
    assert status == 413 and reply["error"]["code"] == -32600

    async def chunks():
        for _ in range(max_body // 65536 + 2):
            yield b" " * 65536

    status, reply = await live.post(chunks())
    assert status == 413 and reply["error"]["code"] == -32600
    assert (await live.rpc("health"))["healthy"] is True


BAD_PARAMS: list[tuple[str, Any]] = [
    ("block", {"height": 0}), ("block", {"height": -1}), ("block", {"height": "abc"}),
    ("block", {"height": 1.5}), ("block", {"height": True}), ("block", {"height": 2**64}),
    ("block", {"nope": 1}), ("block", [1, 2]), ("block", "1"), ("block", 5),
    ("block_by_hash", {}), ("block_by_hash", {"hash": "zz" * 32}), ("block_by_hash", {"hash": "00"}),
    ("block_by_hash", {"hash": 12}), ("blockchain", {"min_height": 5, "max_height": 2}),
    ("tx", {}), ("tx", {"hash": "ab" * 31}), ("tx", {"hash": "ab" * 32, "prove": "yes"}),
    ("tx", {"hash": "ab" * 32, "prove": 1}),
    ("tx_search", {}), ("tx_search", {"type": "list", "height": 1}),
    ("tx_search", {"type": "teleport"}), ("tx_search", {"account": "cm1nope"}),
    ("tx_search", {"type": "list", "limit": 0}), ("tx_search", {"type": "list", "limit": 10**6}),
    ("tx_search", {"type": "list", "cursor": "x"}), ("tx_search", {"type": "list", "cursor": "1"}),
    ("tx_search", {"type": "list", "cursor": "-1:-1"}),
    ("tx_search", {"type": "list", "cursor": "99999999999999999999999:0"}),
    ("tx_search", {"type": "list", "cursor": "1:99999999999"}),
    ("broadcast_tx_sync", {}), ("broadcast_tx_sync", {"tx": "xyz"}),
    ("broadcast_tx_sync", {"tx": 5}), ("broadcast_tx_sync", {"tx": "abc"}),
    ("broadcast_tx_async", {"tx": "g0"}), ("broadcast_tx_commit", {"tx": None}),
    ("unconfirmed_txs", {"limit": -3}), ("num_unconfirmed_txs", {"x": 1}),
    ("account", {}), ("account", {"address": "cm1" + "q" * 38}), ("account", {"address": 1}),
    ("account", {"address": "0x" + "00" * 20}),
    ("listing", {"id": 0}), ("listing", {"id": "one"}), ("listings", {"cursor": -1}),
    ("listings", {"merchant": "bogus"}), ("order", {}), ("orders", {"buyer": "x"}),
    ("reviews", {"listing": 0}), ("reputation", {}), ("provenance", {"order": []}),
    ("rewards_pool", ["extra"]), ("params", {"a": 1}), ("status", [None]),
    ("validators", {"height": "x"}),
]


async def test_bad_params_and_missing_objects(live_node):  # noqa: F811
    live = live_node
    before = await snapshot(live)
    for method, params in BAD_PARAMS:
        error = await live.error(method, params)
        assert error["code"] == -32602, (method, params, error)
    merchant = live.addr("merchant")
    two_filters = await live.error("orders", {"buyer": merchant, "merchant": merchant})
    assert two_filters["code"] == -32602
    missing = [("block", {"height": 10**9}), ("commit", {"height": 10**9}),
               ("block_by_hash", {"hash": "11" * 32}), ("tx", {"hash": "22" * 32}),
               ("listing", {"id": 999}), ("order", {"id": 999}), ("provenance", {"order": 999}),
               ("validators", {"height": 10**9})]
    for method, params in missing:
        assert (await live.error(method, params))["code"] == -32001, (method, params)
    await assert_unchanged_and_alive(live, before)


async def test_bad_txs_are_refused_with_vm_codes(live_node):  # noqa: F811
    live = live_node
    m, b = "merchant", "buyer"
    await commit(live, live.sign(m, T.LIST, 0, listing_body("Vase", quantity=2)))
    committed = live.sign(b, T.BUY, 0, [1, 1, LISTING_PRICE, None])
    await commit(live, committed)
    before = await snapshot(live)

    good = bytes.fromhex(live.sign(b, T.TRANSFER, 1, [address_from_text(live.addr(m)), 1]))
    stranger = PrivateKey(b"\x42" * 32)
    arbiter = address_from_text(live.addr("arbiter"))
    cases: list[tuple[bytes, E.ErrorKind]] = [
        (good[:-5], E.MALFORMED),
        (good + b"\x00", E.MALFORMED),
        (b"\x00", E.BAD_ENVELOPE),
        (b"", E.MALFORMED),
        (good[:-1] + bytes([good[-1] ^ 1]), E.BAD_SIGNATURE),
        (vm.sign_tx(live.keys[b], "other-chain", T.TRANSFER, 1, FEE, [arbiter, 1]),
         E.WRONG_CHAIN),
        (vm.sign_tx(live.keys[b], live.chain_id, T.TRANSFER, 1, 1, [arbiter, 1]), E.FEE_TOO_LOW),
        (vm.sign_tx(live.keys[b], live.chain_id, 99, 1, FEE, [arbiter, 1]), E.UNKNOWN_TYPE),
        (vm.sign_tx(live.keys[b], live.chain_id, T.TRANSFER, 1, FEE, [arbiter]), E.BAD_BODY),
        (vm.sign_tx(live.keys[m], live.chain_id, T.LIST, 1, FEE,
                    [0, "x", 1, 1, 0, 0, "", b"\x00" * 4000]), E.FIELD_TOO_LARGE),
        (vm.sign_tx(live.keys[m], live.chain_id, T.LIST, 1, FEE,
                    [0, "x", 1, 1, 0, 0, "", b"\x00" * 9000]), E.TX_TOO_LARGE),
        # Replays: an old nonce with new content, and a nonce too far ahead.
        (vm.sign_tx(live.keys[b], live.chain_id, T.TRANSFER, 0, FEE, [arbiter, 1]), E.BAD_NONCE),
        (vm.sign_tx(live.keys[b], live.chain_id, T.TRANSFER, 10**6, FEE, [arbiter, 1]),
         E.BAD_NONCE),
        (vm.sign_tx(stranger, live.chain_id, T.TRANSFER, 0, FEE, [arbiter, 1]),
         E.CANNOT_PAY_FEE),
        # Business rules are refused at the door, not included as failed.
        (vm.sign_tx(live.keys[b], live.chain_id, T.BUY, 1, FEE, [1, STOCK, LISTING_PRICE, None]),
         E.INSUFFICIENT_INVENTORY),
        (vm.sign_tx(live.keys[b], live.chain_id, T.BUY, 1, FEE, [1, 1, 1, None]),
         E.PRICE_ABOVE_LIMIT),
        (vm.sign_tx(live.keys[m], live.chain_id, T.BUY, 1, FEE, [1, 1, LISTING_PRICE, None]),
         E.SELF_PURCHASE),
        (vm.sign_tx(live.keys[b], live.chain_id, T.REVIEW, 1, FEE, [1, 5, "early"]),
         E.REVIEW_NOT_ALLOWED),
        (vm.sign_tx(live.keys[b], live.chain_id, T.TRANSFER, 1, FEE, [arbiter, 10**15]),
         E.INSUFFICIENT_FUNDS),
    ]
    for raw, kind in cases:
        for method in ("broadcast_tx_sync", "broadcast_tx_commit"):
            assert_vm_error(await live.error(method, {"tx": raw.hex()}), kind)
        assert (await live.rpc("broadcast_tx_async", tx=raw.hex()))["hash"] == sha256(raw).hex()
    # Resubmitting a committed tx is known, whichever way it comes.
    for method in ("broadcast_tx_sync", "broadcast_tx_commit"):
        error = await live.error(method, {"tx": committed})
        assert error["code"] == TX_ALREADY_KNOWN
    await asyncio.sleep(0.05)  # let the async submissions run
    for raw, _ in cases:
        assert (await live.error("tx", {"hash": sha256(raw).hex()}))["code"] == -32001
    await assert_unchanged_and_alive(live, before)
    # And the node still takes a good tx.
    assert (await commit(live, good.hex()))["code"] == 0


# --- fuzzing --------------------------------------------------------------------------------

JSON_SCALARS = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | \
    st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40)
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=5) |
                           st.dictionaries(st.text(max_size=10), inner, max_size=5),
                           max_leaves=20)
METHODS = ["status", "health", "block", "block_by_hash", "blockchain", "commit", "validators",
           "tx", "tx_search", "broadcast_tx_sync", "broadcast_tx_async", "unconfirmed_txs",
           "account", "listing", "listings", "order", "orders", "reviews", "reputation",
           "provenance", "rewards_pool", "params", "genesis"]
PARAM_VALUES = JSON_SCALARS | st.sampled_from(
    ["cm1" + "q" * 38, "0x" + "00" * 32, "ab" * 32, "1:0", "list", "0x", "-5", "12"]) | \
    st.integers(-3, 3)
PARAM_NAMES = st.sampled_from(["height", "hash", "prove", "account", "type", "limit", "cursor",
                               "tx", "address", "id", "merchant", "buyer", "listing", "order",
                               "min_height", "max_height"]) | st.text(max_size=8)
REQUESTS = st.fixed_dictionaries(
    {"jsonrpc": st.sampled_from(["2.0", "2.0", "1.0"]), "method": st.sampled_from(METHODS)},
    optional={"id": st.integers(-5, 2**40) | st.text(max_size=5) | st.none() | st.booleans(),
              "params": st.dictionaries(PARAM_NAMES, PARAM_VALUES, max_size=4) |
              st.lists(PARAM_VALUES, max_size=4) | JSON_VALUES})
BODIES = (st.binary(max_size=300)
          | JSON_VALUES.map(lambda v: json.dumps(v).encode())
          | REQUESTS.map(lambda v: json.dumps(v).encode())
          | st.lists(REQUESTS, min_size=1, max_size=4).map(lambda v: json.dumps(v).encode()))


def check_reply(status: int, reply: Any) -> None:
    assert status in (200, 204), (status, reply)
    if status == 204:
        assert reply is None
        return
    for item in reply if isinstance(reply, list) else [reply]:
        assert item["jsonrpc"] == "2.0" and "id" in item
        assert ("result" in item) != ("error" in item), item
        if "error" in item:
            code = item["error"]["code"]
            assert isinstance(code, int) and code != -32603, item  # never an internal error
            assert isinstance(item["error"]["message"], str)


async def test_fuzzed_bodies_never_break_the_node(live_node):  # noqa: F811
    live = live_node
    before = await snapshot(live)
    loop = asyncio.get_running_loop()

    @settings(max_examples=250, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(BODIES)
    def post_one(body: bytes) -> None:
        status, reply = asyncio.run_coroutine_threadsafe(live.post(body), loop).result(10)
        check_reply(status, reply)

    # Hypothesis is synchronous: run it in a thread while the node serves on this loop.
    await asyncio.to_thread(post_one)
    await assert_unchanged_and_alive(live, before)


# --- mempool flood --------------------------------------------------------------------------

SENDERS = 48
TXS_PER_SENDER = 40
MAX_POOL_TXS = 150
MAX_POOL_BYTES = 150 * 200
WORKERS = 6
PER_SENDER_IN_FLIGHT = 6


async def test_mempool_flood_respects_limits_and_commits_each_tx_once(node_factory):  # noqa: F811
    live = await node_factory(extra_accounts=SENDERS, overrides={
        ("mempool", "max_txs"): MAX_POOL_TXS, ("mempool", "max_bytes"): MAX_POOL_BYTES,
        ("mempool", "max_txs_per_sender"): 30,
        # small blocks drain the pool more slowly than the flood fills it
        ("consensus", "max_block_txs"): 40})
    await live.wait_height(1)
    start_height = live.node.engine.chain.last_height
    sink = address_from_text(live.addr("arbiter"))
    senders = live.extra_keys
    planned = {i: [bytes.fromhex(live.sign(key, T.TRANSFER, n, [sink, 1 + i]))
                   for n in range(TXS_PER_SENDER)] for i, key in enumerate(senders)}
    invalid: list[tuple[bytes, int]] = []
    for i, key in enumerate(senders[:12]):
        good = planned[i][0]
        invalid += [
            (good[:-1] + bytes([good[-1] ^ 0x80]), E.BAD_SIGNATURE.code),
            (vm.sign_tx(key, live.chain_id, T.TRANSFER, 0, 1, [sink, 1]), E.FEE_TOO_LOW.code),
            (vm.sign_tx(key, live.chain_id, T.TRANSFER, 500, FEE, [sink, 1]), E.BAD_NONCE.code),
            (good[: len(good) // 2], E.MALFORMED.code),
        ]
    accepted: dict[bytes, int] = {}  # tx hash -> sender index
    next_index = dict.fromkeys(planned, 0)
    done_by_sender = {i: set() for i in planned}
    full_refusals = 0
    peak = 0

    pool = live.node.mempool

    def check_limits() -> None:
        nonlocal peak
        assert len(pool) <= MAX_POOL_TXS and pool.size_bytes <= MAX_POOL_BYTES
        peak = max(peak, len(pool))

    count_in = pool._count_in

    def counted(entry) -> None:  # check the limits at every admission, not only between calls
        count_in(entry)
        check_limits()

    pool._count_in = counted

    async def batch_call(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        status, reply = await live.post(json.dumps(requests))
        assert status == 200
        check_limits()
        return sorted(reply, key=lambda r: r["id"])

    async def worker(mine: list[int], junk: list[tuple[bytes, int]]) -> None:
        nonlocal full_refusals
        while any(len(done_by_sender[i]) < TXS_PER_SENDER for i in mine) or junk:
            requests, sent = [], []
            for i in mine:
                n = next_index[i]
                for nonce in range(n, min(n + PER_SENDER_IN_FLIGHT, TXS_PER_SENDER)):
                    if nonce not in done_by_sender[i]:
                        sent.append((planned[i][nonce], i, nonce, None))
            for raw, code in junk[:8]:
                sent.append((raw, None, None, code))
            junk = junk[8:]
            for k, (raw, *_rest) in enumerate(sent):
                requests.append({"jsonrpc": "2.0", "id": k, "method": "broadcast_tx_sync",
                                 "params": {"tx": raw.hex()}})
            if not requests:
                await asyncio.sleep(0.01)
                continue
            progressed = False
            for k in range(0, len(requests), 64):
                for reply in await batch_call(requests[k:k + 64]):
                    raw, i, nonce, expect = sent[reply["id"]]
                    if expect is not None:
                        # The pool checks its room before the nonce: either refusal is right.
                        allowed = (expect, MEMPOOL_FULL) if expect == E.BAD_NONCE.code else (expect,)
                        assert reply["error"]["code"] in allowed, reply
                    elif "result" in reply:
                        assert reply["result"]["code"] == 0
                        accepted[sha256(raw)] = i
                        done_by_sender[i].add(nonce)
                        progressed = True
                    else:
                        assert reply["error"]["code"] == MEMPOOL_FULL, reply
                        assert reply["error"]["data"]["name"] in ("mempool_full", "sender_limit")
                        full_refusals += 1
            for i in mine:
                while next_index[i] in done_by_sender[i]:
                    next_index[i] += 1
            if not progressed:
                await asyncio.sleep(0.005)  # the pool is full: let a block drain it

    shares = [list(range(w, SENDERS, WORKERS)) for w in range(WORKERS)]
    junk_shares = [invalid[w::WORKERS] for w in range(WORKERS)]
    await asyncio.wait_for(asyncio.gather(*(worker(s, j) for s, j in zip(shares, junk_shares,
                                                                          strict=True))), 90)
    assert len(accepted) == SENDERS * TXS_PER_SENDER
    assert full_refusals > 0 and peak > MAX_POOL_TXS // 2  # the flood did hit the limit

    async def pool_drained() -> None:
        while (await live.rpc("num_unconfirmed_txs"))["n_txs"]:
            check_limits()
            await asyncio.sleep(0.02)

    await asyncio.wait_for(pool_drained(), 30)
    assert live.node.mempool._parked == {}

    # Each accepted tx is committed exactly once: its lookup answers, and the blocks hold
    # no tx twice and nothing that was not accepted.
    hashes = list(accepted)
    for k in range(0, len(hashes), 64):
        requests = [{"jsonrpc": "2.0", "id": j, "method": "tx", "params": {"hash": h.hex()}}
                    for j, h in enumerate(hashes[k:k + 64])]
        status, reply = await live.post(json.dumps(requests))
        assert status == 200 and all("result" in r for r in reply), reply
        assert all(r["result"]["result"]["code"] == 0 for r in reply)
    # Inclusion proofs also hold in blocks of many txs.
    busiest = max(range(start_height + 1, live.node.engine.chain.last_height + 1),
                  key=lambda h: len(live.node.db.txs.by_height(h)))
    refs = live.node.db.txs.by_height(busiest)
    assert len(refs) > 10
    for ref in (refs[0], refs[len(refs) // 2], refs[-1]):
        found = await live.rpc("tx", hash=ref.tx_hash.hex(), prove=True)
        proof = found["proof"]
        assert verify_inclusion(bytes.fromhex(found["tx"]["raw"]), proof["index"],
                                proof["total"], [bytes.fromhex(a) for a in proof["aunts"]],
                                bytes.fromhex(proof["txs_root"]))
        assert proof["total"] == len(refs)
    top = live.node.engine.chain.last_height
    in_blocks: list[bytes] = []
    for height in range(start_height + 1, top + 1):
        block = await live.rpc("block", height=height)
        assert len(block["txs"]) <= MAX_POOL_TXS
        in_blocks += [bytes.fromhex(t["hash"]) for t in block["txs"]]
    assert len(in_blocks) == len(set(in_blocks)) == len(accepted)
    assert set(in_blocks) == set(accepted)
    for raw, _ in invalid:
        assert (await live.error("tx", {"hash": sha256(raw).hex()}))["code"] == -32001
    for key in senders:
        account = await live.rpc("account", address=live.addr(key))
        assert account["nonce"] == TXS_PER_SENDER
    sink_account = await live.rpc("account", address=live.addr("arbiter"))
    assert sink_account["balance"] == 1_000_000_000 + TXS_PER_SENDER * sum(
        1 + i for i in range(SENDERS))
    assert (await live.rpc("health"))["healthy"] is True
    await live.wait_height(top + 2)


async def test_parked_tx_survives_a_full_pool(node_factory):  # noqa: F811
    """A tx parked for a nonce gap was acknowledged (code 0): when the gap fills but the pool
    is full, it must wait for room, not vanish."""
    live = await node_factory(overrides={("mempool", "max_txs"): 3})
    await live.wait_height(1)
    live.node.driver.max_block_txs = 0  # hold blocks empty while the pool fills
    sink = address_from_text(live.addr("arbiter"))
    merchant = [live.sign("merchant", T.TRANSFER, n, [sink, 1]) for n in range(2)]
    buyer = [live.sign("buyer", T.TRANSFER, n, [sink, 2]) for n in range(2)]
    for raw in (merchant[0], merchant[1], buyer[1], buyer[0]):  # buyer[1] parks, then fills
        assert (await live.rpc("broadcast_tx_sync", tx=raw))["code"] == 0
    assert (await live.rpc("num_unconfirmed_txs"))["n_txs"] == 3
    full = await live.error("broadcast_tx_sync",
                            {"tx": live.sign("arbiter", T.TRANSFER, 0,
                                             [address_from_text(live.addr("buyer")), 1])})
    assert full["code"] == MEMPOOL_FULL and full["data"]["name"] == "mempool_full"
    live.node.driver.max_block_txs = 5000
    for raw in merchant + buyer:
        tx_hash = sha256(bytes.fromhex(raw)).hex()
        for _ in range(500):
            if "result" in await live.call("tx", {"hash": tx_hash}):
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError(f"accepted tx {tx_hash} was never committed")
    assert (await live.rpc("account", address=live.addr("buyer")))["nonce"] == 2
