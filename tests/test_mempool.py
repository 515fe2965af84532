"""The mempool: nonce order, dedup, parking, limits, re-check after commit, TTL, eviction."""

import pytest

from commerce_vm import decode_tx, execute, execute_block
from commerce_vm import errors as E
from commerce_vm import query as vm_query
from commerce_vm import txtypes as T
from commerce_vm.ledger import ORDER, Order, be8, load
from commerce_vm.reuse import Replaying
from node.mempool import FULL_RECHECK_EVERY, Mempool, MempoolError, MempoolLimits
from node.rpc.errors import MEMPOOL_FULL, TX_ALREADY_KNOWN
from tests.vm_helpers import KEYS, Chain, addr


def make(chain: Chain, **limits) -> Mempool:
    return Mempool(chain.params, chain.state, chain.height, 0, MempoolLimits(**limits))


def transfer(chain: Chain, signer="alice", to="bob", amount=5, **kw) -> bytes:
    return chain.tx(signer, T.TRANSFER, [addr(KEYS[to]), amount], **kw)


def submit(pool: Mempool, raw: bytes):
    return pool.add(pool.decode(raw))


def test_sequential_txs_of_one_sender_are_checked_against_each_other():
    chain = Chain()
    pool = make(chain)
    listing = chain.tx("merchant", T.LIST, [0, "mug", 100, 1, 0, 0, "here", b""])
    submit(pool, listing)
    # the listing exists only in the check state, yet a buy of it is admitted
    chain.block([listing])  # id 1 on the chain
    pool2 = make(chain)
    submit(pool2, chain.tx("alice", T.BUY, [1, 1, 100, None]))
    # the second buy of the only unit is refused at the door with the VM's code
    with pytest.raises(MempoolError) as info:
        submit(pool2, chain.tx("bob", T.BUY, [1, 1, 100, None]))
    assert info.value.code == E.INSUFFICIENT_INVENTORY.code
    assert len(pool2) == 1


def test_dedup_and_stateless_rejections():
    chain = Chain()
    pool = make(chain)
    raw = transfer(chain)
    submit(pool, raw)
    with pytest.raises(MempoolError) as info:
        submit(pool, raw)
    assert info.value.code == TX_ALREADY_KNOWN
    with pytest.raises(MempoolError) as info:
        pool.decode(raw[:-1])
    assert info.value.code == E.MALFORMED.code
    bad_sig = raw[:-1] + bytes([raw[-1] ^ 1])
    with pytest.raises(MempoolError) as info:
        pool.decode(bad_sig)
    assert info.value.code == E.BAD_SIGNATURE.code
    with pytest.raises(MempoolError) as info:
        submit(pool, transfer(chain, fee=1))
    assert info.value.code == E.FEE_TOO_LOW.code
    assert len(pool) == 1


def test_stale_nonce_refused_and_future_nonce_parked_until_gap_fills():
    chain = Chain()
    pool = make(chain)
    first, second, third = (transfer(chain) for _ in range(3))
    assert submit(pool, third) == []  # parked: nonce 2 while 0 is next
    assert submit(pool, second) == []
    assert len(pool) == 0
    added = submit(pool, first)
    assert [t.nonce for t in added] == [0, 1, 2]
    assert [t.nonce for t in pool.reap(10, 10**6)] == [0, 1, 2]
    with pytest.raises(MempoolError) as info:
        submit(pool, transfer(chain, nonce=0, amount=6))
    assert info.value.code == E.BAD_NONCE.code


def test_known_covers_pooled_parked_and_committed_and_follows_each_move():
    chain = Chain()
    pool = make(chain, ttl_blocks=3)
    first, second, third = (transfer(chain) for _ in range(3))
    h = [decode_tx(r, chain.params.chain_id).hash for r in (first, second, third)]
    submit(pool, third)  # parked
    assert h[2] in pool and pool.knows(h[2]) and h[0] not in pool
    with pytest.raises(MempoolError) as info:
        pool.refuse_known(h[2])
    assert info.value.code == TX_ALREADY_KNOWN
    submit(pool, first)
    submit(pool, second)  # promotes the parked third: pooled now, not parked twice
    assert all(x in pool for x in h) and len(pool) == 3
    chain.block([first, second, third])
    pool.update(chain.state, chain.height, 0, h)
    assert not any(x in pool for x in h) and all(pool.knows(x) for x in h)
    # a parked tx that expires leaves every set
    lonely = transfer(chain, nonce=chain.nonces["alice"] + 1)
    lonely_hash = decode_tx(lonely, chain.params.chain_id).hash
    submit(pool, lonely)
    assert lonely_hash in pool
    for _ in range(3):
        chain.empty_blocks(1)
        pool.update(chain.state, chain.height, 0, [])
    assert lonely_hash not in pool and not pool.knows(lonely_hash)
    submit(pool, lonely)  # known no more: parked again
    assert lonely_hash in pool


def test_each_pooled_tx_keeps_the_record_of_its_check_run():
    chain = Chain()
    pool = make(chain)
    raws = [transfer(chain) for _ in range(2)]
    for raw in raws:
        submit(pool, raw)
    first, second = (decode_tx(r, chain.params.chain_id).hash for r in raws)
    record = pool.record(second)
    assert record is not None and record.result.code == E.OK
    assert pool.record(b"\x00" * 32) is None
    chain.block(raws[:1])
    pool.update(chain.state, chain.height, 0, [first])  # a full re-check: its reads still hold
    assert pool.record(first) is None and pool.record(second) is record


def _count_handler_runs(monkeypatch) -> list[int]:
    import commerce_vm.reuse as reuse

    runs = [0]
    original = reuse.handle_in

    def counting(*args):
        runs[0] += 1
        return original(*args)

    monkeypatch.setattr(reuse, "handle_in", counting)
    return runs


def test_a_re_check_replays_the_runs_whose_reads_still_hold(monkeypatch):
    chain = Chain()
    pool = make(chain)
    pooled = [transfer(chain), transfer(chain, signer="bob", to="alice")]
    for raw in pooled:
        submit(pool, raw)
    runs = _count_handler_runs(monkeypatch)
    foreign = transfer(chain, signer="carol", to="stranger")  # another node's tx
    chain.block([foreign])
    pool.update(chain.state, chain.height, 0, [decode_tx(foreign, chain.params.chain_id).hash],
                only_txs_changed_state=True)  # not the pool's prefix: a full re-check
    assert len(pool) == 2 and runs[0] == 0


def test_a_re_check_runs_again_what_the_block_changed_under_it(monkeypatch):
    """carol pays bob in a block the pool never saw: alice's pooled payment to bob read
    bob's old balance, so it must run again. Replayed, the check state would credit bob
    only alice's amount, and refuse bob spending all he now has."""
    chain = Chain()
    pool = make(chain)
    submit(pool, transfer(chain, amount=5))
    runs = _count_handler_runs(monkeypatch)
    foreign = transfer(chain, signer="carol", to="bob", amount=7)
    chain.block([foreign])
    pool.update(chain.state, chain.height, 0, [decode_tx(foreign, chain.params.chain_id).hash],
                only_txs_changed_state=True)
    assert runs[0] == 1
    bob = addr(KEYS["bob"])
    balance = vm_query.account(chain.state, bob)["balance"] + 5
    fee = chain.params.min_fees[T.TRANSFER]
    submit(pool, transfer(chain, signer="bob", to="alice", amount=balance - fee))
    assert len(pool) == 2


def test_far_future_nonce_is_refused():
    chain = Chain()
    pool = make(chain)
    with pytest.raises(MempoolError) as info:
        submit(pool, transfer(chain, nonce=10_000))
    assert info.value.code == E.BAD_NONCE.code


def test_limits_hold_under_a_flood():
    chain = Chain()
    pool = make(chain, max_txs=20, max_txs_per_sender=8, max_bytes=10**6)
    refused = 0
    for signer in ("alice", "bob", "carol", "dave"):
        for _ in range(10):
            try:
                submit(pool, transfer(chain, signer=signer, to="merchant"))
            except MempoolError as err:
                assert err.code == MEMPOOL_FULL
                refused += 1
    assert len(pool) == 20 and refused == 20
    # a flood of invalid txs changes nothing
    for i in range(200):
        with pytest.raises(MempoolError):
            pool.decode(bytes([i % 256]) * (i + 1))
    assert len(pool) == 20


def test_byte_limit_and_tx_size_limit():
    chain = Chain()
    raw = transfer(chain)
    pool = make(chain, max_bytes=len(raw) * 2, max_tx_bytes=len(raw))
    submit(pool, raw)
    submit(pool, transfer(chain))
    with pytest.raises(MempoolError) as info:
        submit(pool, transfer(chain))
    assert info.value.code == MEMPOOL_FULL
    small = make(chain, max_tx_bytes=len(raw) - 1)
    with pytest.raises(MempoolError) as info:
        small.decode(raw)
    assert info.value.code == E.TX_TOO_LARGE.code


def test_higher_fee_evicts_the_lowest_fee_tail():
    chain = Chain()
    pool = make(chain, max_txs=2)
    cheap_a = transfer(chain, signer="alice")
    cheap_b = transfer(chain, signer="bob", to="alice")
    submit(pool, cheap_a)
    submit(pool, cheap_b)
    rich = transfer(chain, signer="carol", fee=50)
    submit(pool, rich)
    assert len(pool) == 2
    assert decode_tx(rich, chain.params.chain_id).hash in pool
    with pytest.raises(MempoolError):
        submit(pool, transfer(chain, signer="dave"))  # same low fee: no eviction


def test_update_removes_committed_and_rechecks_the_rest():
    chain = Chain()
    listing = chain.tx("merchant", T.LIST, [0, "mug", 100, 1, 0, 0, "here", b""])
    chain.block([listing])
    pool = make(chain)
    alice_buy = chain.tx("alice", T.BUY, [1, 1, 100, None])
    submit(pool, alice_buy)
    # bob's buy reaches a block through another node first and takes the only unit
    bob_buy = chain.tx("bob", T.BUY, [1, 1, 100, None])
    chain.block([bob_buy])
    dropped = pool.update(chain.state, chain.height, 0, [decode_tx(bob_buy, chain.params.chain_id).hash])
    assert [t.raw for t in dropped] == [alice_buy]
    assert len(pool) == 0
    # committed txs are remembered: resubmitting one is "already known", not re-executed
    with pytest.raises(MempoolError) as info:
        submit(pool, bob_buy)
    assert info.value.code == TX_ALREADY_KNOWN


def test_committed_txs_leave_and_later_nonces_stay():
    chain = Chain()
    pool = make(chain)
    raws = [transfer(chain) for _ in range(3)]
    for raw in raws:
        submit(pool, raw)
    chain.block(raws[:2])
    hashes = [decode_tx(r, chain.params.chain_id).hash for r in raws[:2]]
    assert pool.update(chain.state, chain.height, 0, hashes) == []
    assert [t.nonce for t in pool.txs()] == [2]
    assert pool.size_bytes == len(raws[2])


def test_ttl_drops_old_txs():
    chain = Chain()
    pool = make(chain, ttl_blocks=2)
    submit(pool, transfer(chain))
    chain.empty_blocks(1)
    assert pool.update(chain.state, chain.height, 0, []) == []
    chain.empty_blocks(1)
    assert len(pool.update(chain.state, chain.height, 0, [])) == 1
    assert len(pool) == 0


def test_reap_respects_count_and_bytes():
    chain = Chain()
    pool = make(chain)
    raws = [transfer(chain) for _ in range(5)]
    for raw in raws:
        submit(pool, raw)
    assert len(pool.reap(3, 10**6)) == 3
    assert len(pool.reap(10, len(raws[0]) * 2)) == 2


def _count_executions(pool: Mempool) -> list[int]:
    calls = [0]
    original = pool._try

    def counting(tx, previous=None, **kw):
        calls[0] += 1
        return original(tx, previous, **kw)

    pool._try = counting
    return calls


def test_a_clean_block_of_pool_txs_rebases_the_check_state_without_re_executing():
    chain = Chain()
    pool = make(chain)
    listing = chain.tx("merchant", T.LIST, [0, "mug", 100, 5, 0, 0, "here", b""])
    raws = [listing] + [transfer(chain) for _ in range(4)]
    for raw in raws:
        submit(pool, raw)
    calls = _count_executions(pool)
    chain.block(raws[:2])
    hashes = [decode_tx(r, chain.params.chain_id).hash for r in raws[:2]]
    assert pool.update(chain.state, chain.height, 0, hashes, only_txs_changed_state=True) == []
    assert calls[0] == 0  # nothing re-executed
    assert [t.nonce for t in pool.txs()] == [1, 2, 3]
    # the rebased check state still knows what the waiting txs will do: alice's next
    # nonce counts them, and a buy of the committed listing is admitted
    assert pool.next_nonce(addr(KEYS["alice"])) == 4
    submit(pool, chain.tx("bob", T.BUY, [1, 1, 100, None]))
    assert len(pool) == 4


def test_a_block_with_other_effects_or_foreign_txs_gets_a_full_re_check():
    chain = Chain()
    pool = make(chain)
    raws = [transfer(chain) for _ in range(3)]
    for raw in raws:
        submit(pool, raw)
    calls = _count_executions(pool)
    chain.block(raws[:1])
    first = [decode_tx(raws[0], chain.params.chain_id).hash]
    pool.update(chain.state, chain.height, 0, first, only_txs_changed_state=False)
    assert calls[0] == 2  # expirations or validator changes: everything re-executed
    foreign = chain.tx("carol", T.TRANSFER, [addr(KEYS["dave"]), 1])
    chain.block([raws[1], foreign])
    hashes = [decode_tx(r, chain.params.chain_id).hash for r in (raws[1], foreign)]
    pool.update(chain.state, chain.height, 0, hashes, only_txs_changed_state=True)
    assert calls[0] == 3  # a tx this pool never saw: re-check the one left


def test_a_block_in_another_order_gets_a_full_re_check():
    """Two buys numbered one way by this pool and the other way by the block: the pool must
    follow the block, or it refuses the merchant's ship of the order the block made
    (the check state said that order was the other merchant's)."""
    chain = Chain()
    chain.block([chain.tx("merchant", T.LIST, [0, "mug", 100, 5, 0, 0, "here", b""]),
                 chain.tx("merchant2", T.LIST, [0, "cup", 100, 5, 0, 0, "here", b""])])
    pool = make(chain)
    alice_buy = chain.tx("alice", T.BUY, [1, 1, 100, None])  # the pool's order 1: merchant's
    bob_buy = chain.tx("bob", T.BUY, [2, 1, 100, None])  # the pool's order 2: merchant2's
    submit(pool, alice_buy)
    submit(pool, bob_buy)
    chain.block([bob_buy, alice_buy])  # committed: order 1 is merchant2's
    hashes = [decode_tx(r, chain.params.chain_id).hash for r in (bob_buy, alice_buy)]
    pool.update(chain.state, chain.height, 0, hashes, only_txs_changed_state=True)
    ship = chain.tx("merchant2", T.SHIP, [1, "PostNord", "TRK1", None, "Lyon", "packed"])
    assert len(submit(pool, ship)) == 1


def test_a_full_re_check_comes_at_least_every_few_blocks():
    from node.mempool import FULL_RECHECK_EVERY

    chain = Chain()
    pool = make(chain, ttl_blocks=FULL_RECHECK_EVERY)
    # waits (parked: bob's nonce 0 never comes) and grows old
    old = transfer(chain, signer="bob", to="alice", nonce=1)
    submit(pool, old)
    calls = _count_executions(pool)
    for _ in range(FULL_RECHECK_EVERY):
        raw = transfer(chain)
        submit(pool, raw)
        chain.block([raw])
        pool.update(chain.state, chain.height, 0, [decode_tx(raw, chain.params.chain_id).hash],
                    only_txs_changed_state=True)
    assert calls[0] == FULL_RECHECK_EVERY  # only admissions so far: every block rebased
    assert decode_tx(old, chain.params.chain_id).hash in pool
    raw = transfer(chain)
    submit(pool, raw)
    chain.block([raw])
    pool.update(chain.state, chain.height, 0, [decode_tx(raw, chain.params.chain_id).hash],
                only_txs_changed_state=True)
    assert decode_tx(old, chain.params.chain_id).hash not in pool  # the full re-check: TTL


def _count_buy_runs(monkeypatch) -> list[int]:
    runs = [0]
    buy = execute.HANDLERS[T.BUY]

    def counting(*args):
        runs[0] += 1
        return buy(*args)

    monkeypatch.setitem(execute.HANDLERS, T.BUY, counting)
    return runs


def _foreign_block(chain: Chain) -> list[bytes]:
    """A block of a tx this pool never saw (another proposer's, so no rebase): its hashes."""
    raw = chain.tx("carol", T.TRANSFER, [addr(KEYS["dave"]), 1])
    chain.block([raw])
    return [decode_tx(raw, chain.params.chain_id).hash]


def test_a_light_re_check_replays_a_buy_checked_at_an_earlier_height(monkeypatch):
    """A buy reads the height (its ship-by deadline), so an exact re-check runs it again
    after every block; the light one replays its record where everything it read holds,
    and the exact re-check of every FULL_RECHECK_EVERY-th block runs it again."""
    chain = Chain()
    chain.block([chain.tx("merchant", T.LIST, [0, "mug", 100, 5, 0, 0, "here", b""])])
    pool = make(chain)
    submit(pool, chain.tx("alice", T.BUY, [1, 1, 100, None]))
    runs = _count_buy_runs(monkeypatch)
    for _ in range(FULL_RECHECK_EVERY):
        committed = _foreign_block(chain)
        assert pool.update(chain.state, chain.height, 0, committed,
                           only_txs_changed_state=True) == []
    assert runs[0] == 0 and len(pool) == 1
    pool.update(chain.state, chain.height, 0, _foreign_block(chain), only_txs_changed_state=True)
    assert runs[0] == 1 and len(pool) == 1  # the exact re-check


def test_a_light_re_check_runs_a_buy_whose_reads_changed_and_drops_it_if_it_fails(monkeypatch):
    chain = Chain()
    chain.block([chain.tx("merchant", T.LIST, [0, "last mug", 100, 1, 0, 0, "here", b""])])
    pool = make(chain)
    submit(pool, chain.tx("alice", T.BUY, [1, 1, 100, None]))
    runs = _count_buy_runs(monkeypatch)
    # another node's pool sold the last unit to bob first
    bob = chain.tx("bob", T.BUY, [1, 1, 100, None])
    chain.block([bob])
    dropped = pool.update(chain.state, chain.height, 0,
                          [decode_tx(bob, chain.params.chain_id).hash], only_txs_changed_state=True)
    assert runs[0] == 2  # bob's buy in the block, alice's again in the re-check
    assert [t.sender_address for t in dropped] == [addr(KEYS["alice"])] and len(pool) == 0


def test_a_record_replayed_at_another_height_runs_for_real_in_a_block():
    """The light re-check keeps the admission's record (its stamps are of that height); a
    block at a later height must not replay it: the order gets the block's own height."""
    chain = Chain()
    chain.block([chain.tx("merchant", T.LIST, [0, "mug", 100, 5, 0, 0, "here", b""])])
    pool = make(chain)
    raw = chain.tx("alice", T.BUY, [1, 1, 100, None])
    submit(pool, raw)
    admitted_at = chain.height + 1
    for _ in range(2):
        pool.update(chain.state, chain.height, 0, _foreign_block(chain),
                    only_txs_changed_state=True)
    tx = pool.txs()[0]
    assert pool.record(tx.hash).context == (("height", admitted_at),)
    replaying = Replaying(pool.record)
    block = execute_block(chain.state, chain.params, chain.context(), [tx],
                          drop_rejected=True, run=replaying)
    assert replaying.reused == 0
    order = load(Order, dict(block.changes)[ORDER + be8(1)])
    assert order.created_height == chain.height + 1 == admitted_at + 2
    assert order.ship_by == chain.height + 1 + chain.params.default_ship_within

