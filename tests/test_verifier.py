"""Signature checks in the verify pool (node.verifier) never change what is accepted.

- TxVerifier alone: good txs come back decoded and verified (in the worker processes, not
  again here); mis-signed or garbage txs are not cached (the loop meets them again and
  refuses them); the cache is bounded; the urgent lane (a proposal's txs) does not wait
  behind the regular one; a worker that dies, cannot start, answers wrong or too late costs
  speed only, and a dead one is replaced; the worker's protocol, and its exit at end of input.
- A JSON-RPC batch of broadcast_tx_sync: every tx is verified in the pool first, the good
  ones are admitted in order, a mis-signed one in the middle is refused with its VM code.
- A gossiped tx batch: verified in the pool, then admitted; the peer that relayed a
  mis-signed tx is punished.
"""

from __future__ import annotations

import asyncio
import json
from functools import cache

from hypothesis import given, settings
from hypothesis import strategies as st

from commerce_vm import errors as E
from commerce_vm import txtypes as T
from core.address import address_from_text
from core.encoding import encode
from core.hashing import sha256
from node.mempool import Mempool
from node.network import TXS
from node.verifier import MIN_CHUNK, TxVerifier, worker_command
from tests.node_fixtures import live_node, node_factory  # noqa: F401
from tests.test_fuzz_inputs import PEER, FakeNetwork
from tests.vm_helpers import KEYS, addr, default_params

FEE = 10


def _mis_signed(raw: bytes) -> bytes:
    return raw[:-1] + bytes([raw[-1] ^ 1])


def _verifier(params, workers: int = 1, capacity: int = 1000, command=None) -> TxVerifier:
    import commerce_vm as vm

    pool = Mempool(params, vm.MemoryState(), 0, 0)
    return TxVerifier(pool.decode, workers,
                      worker_command(params.max_tx_size) if command is None
                      else command, capacity)


def _transfers(params, count: int, key: str = "alice") -> list[bytes]:
    import commerce_vm as vm

    return [vm.sign_tx(KEYS[key], params.chain_id, T.TRANSFER, n, FEE, [addr(KEYS["bob"]), 1])
            for n in range(count)]


async def test_pool_caches_only_txs_that_pass_every_check(monkeypatch) -> None:
    import commerce_vm as vm
    from commerce_vm import tx as vm_tx

    params = default_params()
    good = _transfers(params, 100)
    bad_sig = _mis_signed(good[0])
    other_chain = vm.sign_tx(KEYS["alice"], "other", T.TRANSFER, 0, FEE, [addr(KEYS["bob"]), 1])
    verified_here = []
    real_verify = vm_tx.verify_raw
    monkeypatch.setattr(vm_tx, "verify_raw", lambda *a: verified_here.append(a) or real_verify(*a))
    verifier = _verifier(params, workers=2)
    try:
        await verifier.check_many([*good, bad_sig, b"\x00garbage", other_chain])
        assert verifier.verified == len(good)
        for raw in good:
            tx = verifier.get(sha256(raw))
            assert tx is not None and tx.raw == raw and tx.sig_valid is True
        for raw in (bad_sig, b"\x00garbage", other_chain):
            assert verifier.get(sha256(raw)) is None
        assert verified_here == []  # the workers verified; this process did not again
        assert verifier.take(sha256(good[0])) is not None
        assert verifier.take(sha256(good[0])) is None  # taken once
    finally:
        await verifier.aclose()

    small = _verifier(params, capacity=10)
    try:
        await small.check_many(good)
        assert len(small) == 10
        assert small.get(sha256(good[-1])) is not None  # the newest are kept
        assert small.get(sha256(good[0])) is None
    finally:
        await small.aclose()


async def test_urgent_chunks_go_before_a_regular_backlog() -> None:
    """A proposal's unknown txs go to the urgent lane: with the only worker busy on a gossip
    backlog of many chunks, they are verified after the chunk in flight, not the backlog."""
    from node.verifier import MAX_CHUNK

    params = default_params()
    backlog_txs = _transfers(params, 8 * MAX_CHUNK)
    urgent = _transfers(params, 3, key="bob")
    verifier = _verifier(params, workers=1, capacity=10_000)
    try:
        await verifier.check_many(urgent[:1])  # the worker is up
        backlog = asyncio.ensure_future(verifier.check_many(backlog_txs))
        await asyncio.sleep(0)  # the first backlog chunk is now in flight
        await asyncio.wait_for(verifier.check_many(urgent, urgent=True), 30)
        assert all(verifier.get(sha256(r)) is not None for r in urgent)
        assert not backlog.done()
        assert verifier.get(sha256(backlog_txs[-1])) is None
        await asyncio.wait_for(backlog, 60)
        assert all(verifier.get(sha256(r)) is not None for r in backlog_txs)
    finally:
        await verifier.aclose()


async def test_a_dead_worker_is_replaced_but_not_in_a_tight_loop(monkeypatch) -> None:
    import sys

    from node import verifier as verifier_module

    params = default_params()
    txs = _transfers(params, 2 * MIN_CHUNK)
    verifier = _verifier(params)
    try:
        await verifier.check_many(txs[:MIN_CHUNK])
        process = verifier._all[0].process
        process.kill()
        await process.wait()
        await asyncio.wait_for(verifier.check_many(txs[MIN_CHUNK:]), 10)
        assert verifier.verified == 2 * MIN_CHUNK  # a new worker answered
        assert verifier._all[0].starts == 2
    finally:
        await verifier.aclose()

    # a worker that dies at every request is started again at most once per delay
    monkeypatch.setattr(verifier_module, "RESTART_DELAY_S", 60.0)
    dying = _verifier(params, command=[sys.executable, "-c", "import sys; sys.stdin.buffer.read(8)"])
    try:
        await asyncio.wait_for(dying.check_many(txs), 10)
        await asyncio.wait_for(dying.check_many(txs), 10)
        assert dying._all[0].starts == 1 and dying.verified == 0
    finally:
        await dying.aclose()


async def test_a_worker_that_cannot_start_or_answers_wrong_or_late_leaves_txs_to_the_loop(
        monkeypatch) -> None:
    import sys

    from node import verifier as verifier_module

    monkeypatch.setattr(verifier_module, "REQUEST_TIMEOUT_S", 0.5)
    params = default_params()
    txs = _transfers(params, MIN_CHUNK)
    for command in (["/nonexistent/python"],
                    [sys.executable, "-c", "import sys; sys.stdin.buffer.read(8)"],
                    [sys.executable, "-c", "import sys, time; sys.stdin.buffer.read(8); time.sleep(60)"],
                    [sys.executable, "-c", "import sys; sys.stdout.buffer.write(b'\\0\\0\\0\\1\\1')"
                     "; sys.stdout.flush(); sys.stdin.buffer.read()"]):
        verifier = _verifier(params, command=command)
        try:
            await asyncio.wait_for(verifier.check_many(txs), 10)
            assert verifier.verified == 0 and len(verifier) == 0, command
            assert verifier._all[0].process is None  # killed, if it ran: not asked again
        finally:
            await verifier.aclose()


_PARAMS = default_params()


@settings(max_examples=400, deadline=None, database=None)
@given(which=st.integers(0, 2), edits=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)),
                                                max_size=3),
       cut=st.integers(0, 3))
def test_the_workers_signature_check_agrees_with_the_vms_for_every_tx_it_decodes(
        which: int, edits: list[tuple[int, int]], cut: int) -> None:
    """The worker reads only the signer, the signature and what was signed; for every raw
    that decode_tx accepts (the loop decodes each flagged tx), its verdict must be
    verify_tx_signature's. Edits: bytes overwritten, the end cut off."""
    import commerce_vm as vm
    from node.verify_worker import signature_ok

    raw = bytearray(_signed_examples()[which])
    for at, value in edits:
        raw[at % len(raw)] = value
    raw = bytes(raw[:len(raw) - cut])
    try:
        tx = vm.decode_tx(raw, _PARAMS.chain_id, _PARAMS.max_tx_size)
    except vm.VMError:
        return
    assert signature_ok(raw, _PARAMS.max_tx_size) == vm.verify_tx_signature(tx)
    if not edits and not cut:
        assert tx.sig_valid is True


@cache
def _signed_examples() -> list[bytes]:
    import commerce_vm as vm

    chain = _PARAMS.chain_id
    return [vm.sign_tx(KEYS["alice"], chain, T.TRANSFER, 3, FEE, [addr(KEYS["bob"]), 7]),
            vm.sign_tx(KEYS["bob"], chain, T.BUY, 0, FEE, [1, 2, 100, None]),
            vm.sign_tx(KEYS["alice"], chain, T.LIST, 1, FEE,
                       [0, "lamp", 100, 5, 10, 20, "here", b"\x01"])]


def test_worker_protocol_flags_each_tx_and_stops_at_the_end_of_its_input() -> None:
    import io
    import subprocess

    import msgpack

    from node.verify_worker import serve

    params = default_params()
    good = _transfers(params, 3)
    raws = [good[0], _mis_signed(good[1]), b"\x00garbage", good[2]]

    def frame(payload: bytes) -> bytes:
        return len(payload).to_bytes(4, "big") + payload

    source = io.BytesIO(frame(msgpack.packb(raws)) + frame(msgpack.packb("not a list")))
    sink = io.BytesIO()
    serve(source, sink, params.max_tx_size)
    assert sink.getvalue() == frame(b"\x01\x00\x00\x01") + frame(b"")

    # the real process: answers, then exits when its stdin closes (as when the node dies)
    worker = subprocess.Popen(worker_command(params.max_tx_size),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    out, _ = worker.communicate(frame(msgpack.packb(raws)), timeout=30)
    assert out == frame(b"\x01\x00\x00\x01") and worker.returncode == 0


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
        hashes = tuple(sha256(r) for r in raws)
        block = SimpleNamespace(txs=tuple(raws), tx_hashes=lambda: hashes)
        event = ProposalReceived(SimpleNamespace(block=block), 0)
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
