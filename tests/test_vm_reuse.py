"""Reusing mempool check runs in a block (commerce_vm.reuse) never changes the block.

A record is applied only where every key its handler read and every context field it used
holds the same value in the block, at the point the tx runs; anything else runs again. The
property test checks the txs of random blocks in a shuffled order, at a possibly different
height, on a state that may lag behind, and requires the block executed with those records
to equal the block executed without them: results, events, writes and app hash.
"""

from __future__ import annotations

from random import Random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commerce_vm import Overlay, apply_tx, decode_tx, execute_block
from commerce_vm import errors as E
from commerce_vm import txtypes as T
from commerce_vm.ledger import ACCOUNT, unpack
from commerce_vm.reuse import Recorder, Replaying
from tests.test_vm_properties import ACTORS, _setup, _sign_block, blocks
from tests.vm_helpers import KEYS, Chain, addr


def _record(chain: Chain, txs, order, height: int) -> dict:
    """Check `order` on one overlay of the chain state, as a mempool does; keep the records."""
    check = Overlay(chain.state)
    records = {}
    for tx in order:
        recorder = Recorder()
        apply_tx(check, chain.params, chain.context(height), tx, recorder)
        if recorder.record is not None:
            records[tx.hash] = recorder.record
    return records


def _same(a, b) -> None:
    assert a.results == b.results
    assert a.changes == b.changes and a.app_hash == b.app_hash
    assert a.included == b.included and a.events == b.events
    assert a.validator_updates == b.validator_updates


def _resync(chain: Chain) -> None:
    for actor in ACTORS:
        value = chain.state.get(ACCOUNT + addr(KEYS[actor]))
        chain.nonces[actor] = 0 if value is None else unpack(value)[1]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blocks(), st.randoms(use_true_random=False))
def test_a_block_with_reused_check_runs_equals_the_block_without(spec, rnd: Random) -> None:
    chain = Chain()
    _setup(chain)
    for block_spec in spec:
        txs = [decode_tx(r, chain.params.chain_id) for r in _sign_block(chain, block_spec)]
        order = list(txs)
        rnd.shuffle(order)
        records = _record(chain, txs, order, chain.height + rnd.choice([0, 1, 1, 2]))
        ctx = chain.context()
        plain = execute_block(chain.state, chain.params, ctx, txs, drop_rejected=True)
        replaying = Replaying(records.get)
        reused = execute_block(chain.state, chain.params, ctx, txs, drop_rejected=True,
                               run=replaying)
        _same(reused, plain)
        assert replaying.reused <= len(records)
        chain.state.apply(plain.changes)
        chain.height += 1
        _resync(chain)


def test_a_record_whose_reads_changed_runs_again():
    """Two buyers race for the last unit; the mempool checked them in the other order. The
    record of the buy that now comes second saw a unit left; in the block it must fail."""
    chain = Chain()
    chain.block([chain.tx("merchant", T.LIST, [0, "last mug", 100, 1, 0, 0, "here", b""])])
    alice = decode_tx(chain.tx("alice", T.BUY, [1, 1, 100, None]), chain.params.chain_id)
    bob = decode_tx(chain.tx("bob", T.BUY, [1, 1, 100, None]), chain.params.chain_id)
    records = _record(chain, [alice, bob], [bob, alice], chain.height + 1)
    assert records[bob.hash].result.code == E.OK  # checked first: it got the unit
    replaying = Replaying(records.get)
    block = execute_block(chain.state, chain.params, chain.context(), [alice, bob],
                          drop_rejected=True, run=replaying)
    assert [r.code for r in block.results] == [E.OK, E.INSUFFICIENT_INVENTORY.code]
    assert replaying.reused == 0  # alice's record saw no unit sold; bob's saw one left


def test_records_are_used_where_nothing_they_read_changed():
    chain = Chain()
    pays = [("alice", "carol"), ("bob", "carrier"), ("merchant", "carol")]
    txs = [decode_tx(chain.tx(payer, T.TRANSFER, [addr(KEYS[payee]), 5]), chain.params.chain_id)
           for payer, payee in pays]
    # checked in the other order: the two transfers to carol read her balance in the other
    # order, so they must run again; the transfer to the carrier read nothing that changed
    records = _record(chain, txs, list(reversed(txs)), chain.height + 1)
    replaying = Replaying(records.get)
    block = execute_block(chain.state, chain.params, chain.context(), txs,
                          drop_rejected=True, run=replaying)
    _same(block, execute_block(chain.state, chain.params, chain.context(), txs,
                               drop_rejected=True))
    assert replaying.reused == 1
    # checked in block order, every record holds
    replaying = Replaying(_record(chain, txs, txs, chain.height + 1).get)
    execute_block(chain.state, chain.params, chain.context(), txs, drop_rejected=True,
                  run=replaying)
    assert replaying.reused == 3
    # checked for another height: a transfer does not read the height, so they still hold
    replaying = Replaying(_record(chain, txs, txs, chain.height + 5).get)
    execute_block(chain.state, chain.params, chain.context(), txs, drop_rejected=True,
                  run=replaying)
    assert replaying.reused == 3


def test_a_handler_that_scans_a_range_keeps_no_record():
    """A validator vote counts the votes stored so far by scanning them. Checked after two
    other votes it passes the change; in a block that holds only one of them it must not,
    though every key it reads one by one holds the same value."""
    chain = Chain()
    target = KEYS["stranger"].public_key
    votes = [decode_tx(chain.tx(v, T.VALIDATOR_VOTE, [T.VOTE_ADD, target, 5]),
                       chain.params.chain_id) for v in ("val1", "val2", "val3")]
    records = _record(chain, votes, votes, chain.height + 1)
    block_txs = votes[1:]  # val1's vote went into another block, or never came
    replaying = Replaying(records.get)
    with_records = execute_block(chain.state, chain.params, chain.context(), block_txs,
                                 drop_rejected=True, run=replaying)
    _same(with_records, execute_block(chain.state, chain.params, chain.context(), block_txs,
                                      drop_rejected=True))
    assert not with_records.validator_updates
    assert votes[2].hash not in records
