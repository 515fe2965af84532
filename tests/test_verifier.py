"""Signature checks in the verify pool (node.verifier) never change what is accepted.

- TxVerifier alone: good txs come back decoded and verified; mis-signed or garbage txs are
  not cached (the loop meets them again and refuses them); the cache is bounded; the
  urgent lane (a proposal's txs) does not wait behind the regular one.
- A JSON-RPC batch of broadcast_tx_sync: every tx is verified in the pool first, the good
  ones are admitted in order, a mis-signed one in the middle is refused with its VM code.
- A gossiped tx batch: verified in the pool, then admitted; the peer that relayed a
  mis-signed tx is punished.
"""

from __future__ import annotations

import asyncio
import json

from commerce_vm import errors as E
from commerce_vm import txtypes as T
from core.address import address_from_text
from core.encoding import encode
from core.hashing import sha256
from node.mempool import Mempool
from node.network import TXS
from node.verifier import TxVerifier
from tests.node_fixtures import live_node, node_factory  # noqa: F401
from tests.test_fuzz_inputs import PEER, FakeNetwork
from tests.vm_helpers import KEYS, addr, default_params

FEE = 10


def _mis_signed(raw: bytes) -> bytes:
    return raw[:-1] + bytes([raw[-1] ^ 1])


async def test_pool_caches_only_txs_that_pass_every_check() -> None:
    import commerce_vm as vm

    params = default_params()
    pool = Mempool(params, vm.MemoryState(), 0, 0)
    good = [vm.sign_tx(KEYS["alice"], params.chain_id, T.TRANSFER, n, FEE, [addr(KEYS["bob"]), 1])
            for n in range(100)]
    bad_sig = _mis_signed(good[0])
    other_chain = vm.sign_tx(KEYS["alice"], "other", T.TRANSFER, 0, FEE, [addr(KEYS["bob"]), 1])
    verifier = TxVerifier(pool.decode, workers=2, capacity=1000)
    try:
        await verifier.check_many([*good, bad_sig, b"\x00garbage", other_chain])
        assert verifier.verified == len(good)
        for raw in good:
            tx = verifier.get(sha256(raw))
            assert tx is not None and tx.raw == raw and tx.sig_valid is True
        for raw in (bad_sig, b"\x00garbage", other_chain):
            assert verifier.get(sha256(raw)) is None
        assert verifier.take(sha256(good[0])) is not None
        assert verifier.take(sha256(good[0])) is None  # taken once
    finally:
        verifier.close()

    small = TxVerifier(pool.decode, workers=1, capacity=10)
    try:
        await small.check_many(good)
        assert len(small) == 10
        assert small.get(sha256(good[-1])) is not None  # the newest are kept
        assert small.get(sha256(good[0])) is None
    finally:
        small.close()


async def test_urgent_checks_do_not_wait_behind_a_busy_regular_lane() -> None:
    """A proposal's unknown txs go to the urgent lane: they are verified while the regular
    lane is still stuck on a gossip backlog (here, a check that waits for the test)."""
    import threading
    from types import SimpleNamespace

    release = threading.Event()

    def check(raw: bytes):
        if raw.startswith(b"backlog"):
            release.wait(10)
        return SimpleNamespace(hash=sha256(raw))

    verifier = TxVerifier(check, workers=1, capacity=1000)
    try:
        backlog = asyncio.ensure_future(verifier.check_many([b"backlog-1"]))
        await asyncio.sleep(0.05)  # the only regular worker is now busy
        urgent = [b"proposal-%d" % i for i in range(3)]
        await asyncio.wait_for(verifier.check_many(urgent, urgent=True), 5)
        assert all(verifier.get(sha256(r)) is not None for r in urgent)
        assert not backlog.done()
        release.set()
        await asyncio.wait_for(backlog, 5)
        assert verifier.get(sha256(b"backlog-1")) is not None
    finally:
        release.set()
        verifier.close()


async def test_rpc_batch_is_verified_in_the_pool_and_answered_in_order(live_node) -> None:  # noqa: F811
    live = live_node
    node = live.node
    seller = address_from_text(live.addr("merchant"))
    raws = [live.sign("buyer", T.TRANSFER, n, [seller, 1]) for n in range(40)]
    raws[20] = _mis_signed(bytes.fromhex(raws[20])).hex()  # breaks the nonce chain at 20
    before, reused_before = node.verifier.verified, node.app.reused_runs
    batch = [{"jsonrpc": "2.0", "id": i, "method": "broadcast_tx_sync", "params": {"tx": raw}}
             for i, raw in enumerate(raws)]
    status, replies = await live.post(json.dumps(batch))
    assert status == 200
    by_id = {r["id"]: r for r in replies}
    assert all(by_id[i]["result"]["code"] == 0 for i in range(20))
    assert by_id[20]["error"]["code"] == E.BAD_SIGNATURE.code
    # nonces 21.. wait for nonce 20, which never came: parked, answered code 0
    assert all(by_id[i]["result"]["code"] == 0 for i in range(21, 40))
    assert node.verifier.verified - before == 39  # the pool checked every good tx
    # (the answer travels through the RPC thread: the block may be built before it arrives)
    await live.wait_height(node.engine.chain.last_height + 2)
    account = await live.rpc("account", address=live.addr("buyer"))
    assert account["nonce"] == 20
    # the proposal applied the mempool check runs instead of running the transfers again
    assert node.app.reused_runs - reused_before == 20


async def test_gossiped_txs_are_verified_then_admitted(live_node) -> None:  # noqa: F811
    live = live_node
    node = live.node
    fake = FakeNetwork()
    node.network = fake
    try:
        node.net.on_peer_connected(PEER)
        seller = address_from_text(live.addr("merchant"))
        raws = [bytes.fromhex(live.sign("buyer", T.TRANSFER, n, [seller, 1])) for n in range(30)]
        bad = _mis_signed(bytes.fromhex(live.sign("merchant", T.TRANSFER, 0, [seller, 1])))
        before = node.verifier.verified
        node.net.on_message(PEER, TXS, encode([*raws, bad]))

        async def all_in() -> None:
            while not fake.punished or \
                    (await live.rpc("account", address=live.addr("buyer")))["nonce"] < 30:
                await asyncio.sleep(0.02)

        await asyncio.wait_for(all_in(), 10)
        assert node.verifier.verified - before == 30
        assert (await live.rpc("account", address=live.addr("merchant")))["nonce"] == 0
        assert [reason for _, reason, _ in fake.punished] == [
            "relayed an invalid tx (bad_signature)"]
    finally:
        node.network = None
        node.net.stop()


async def test_gossip_inbox_is_bounded(live_node) -> None:  # noqa: F811
    from node.network import TX_INBOX_BATCHES

    live = live_node
    node = live.node
    fake = FakeNetwork()
    node.network = fake
    try:
        node.net.on_peer_connected(PEER)
        seller = address_from_text(live.addr("merchant"))
        # every batch arrives in one loop turn: none is drained before the next comes
        for n in range(TX_INBOX_BATCHES + 5):
            raw = bytes.fromhex(live.sign("buyer", T.TRANSFER, n, [seller, 1]))
            node.net.on_message(PEER, TXS, encode([raw]))
        assert len(node.net._tx_inbox) == TX_INBOX_BATCHES
        assert node.net.dropped_tx_batches == 5
    finally:
        node.network = None
        node.net.stop()


async def test_copies_relayed_by_several_peers_are_verified_once(live_node) -> None:  # noqa: F811
    live = live_node
    node = live.node
    fake = FakeNetwork()
    node.network = fake
    other = b"\x02" * 32
    decoded_on_loop = []
    real_decode = node.mempool.decode

    def counting_decode(raw: bytes):
        decoded_on_loop.append(raw)
        return real_decode(raw)

    node.mempool.decode = counting_decode
    try:
        node.net.on_peer_connected(PEER)
        node.net.on_peer_connected(other)
        seller = address_from_text(live.addr("merchant"))
        raws = [bytes.fromhex(live.sign("buyer", T.TRANSFER, n, [seller, 1])) for n in range(20)]
        before = node.verifier.verified
        # both peers relay the same batch in one loop turn: one inbox drain sees both
        node.net.on_message(PEER, TXS, encode(raws))
        node.net.on_message(other, TXS, encode(raws))

        async def all_in() -> None:
            while not all(node.mempool.knows(sha256(r)) for r in raws):
                await asyncio.sleep(0.01)

        await asyncio.wait_for(all_in(), 10)
        await asyncio.sleep(0.05)
        assert node.verifier.verified - before == 20
        assert decoded_on_loop == []  # no copy was decoded or verified on the loop
        # a late copy of known txs is refused by hash, before any decoding
        for raw in raws:
            node.net._admit_gossiped(other, sha256(raw), raw)
        assert decoded_on_loop == [] and node.verifier.verified - before == 20
        assert fake.punished == []
    finally:
        node.mempool.decode = real_decode
        node.network = None
        node.net.stop()


async def test_a_proposal_with_unknown_txs_is_fed_after_they_are_verified(live_node) -> None:  # noqa: F811
    from types import SimpleNamespace

    from consensus.events import ProposalReceived
    from node.verifier import MIN_CHUNK

    live = live_node
    node = live.node
    seller = address_from_text(live.addr("merchant"))
    raws = [bytes.fromhex(live.sign("buyer", T.TRANSFER, n, [seller, 1]))
            for n in range(MIN_CHUNK + 8)]
    fed = []
    real_feed = node.driver.feed

    def recording_feed(event):
        if isinstance(event, ProposalReceived):
            # by now every tx of the block is decoded and verified, ready for execution
            fed.append(all(node.known_tx(sha256(r)) is not None for r in raws))
        else:
            real_feed(event)

    node.driver.feed = recording_feed
    try:
        event = ProposalReceived(SimpleNamespace(block=SimpleNamespace(txs=tuple(raws))), 0)
        assert node.net._verify_first(event)
        assert fed == []  # not fed before the pool is done
        for _ in range(200):
            if fed:
                break
            await asyncio.sleep(0.01)
        assert fed == [True]
        # a proposal whose txs are all known is fed at once
        assert not node.net._verify_first(event)
    finally:
        node.driver.feed = real_feed
