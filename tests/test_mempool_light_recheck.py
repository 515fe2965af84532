"""The mempool's light re-check (node.mempool.Mempool.update) keeps exactly the txs an exact
re-check would keep.

The light re-check replays a tx's record made at an earlier height wherever everything it
read holds. That is exact as long as what a handler decides from the height (late shipping,
late disputes) is also visible in what it reads: the expiry at a deadline changes the order.
The random txs here act on committed orders whose deadlines fall due during the run, and on
orders the pool's own buys create, whose windows are longer than the run (the one case the
light re-check approximates: see Mempool.update). Every block is another proposer's: some of
the pool's txs in another order, so the pool is never rebased.
"""

from __future__ import annotations

import contextlib
from random import Random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commerce_vm import BlockContext, Overlay, apply_tx
from commerce_vm import errors as E
from commerce_vm import txtypes as T
from node.mempool import Mempool, MempoolError
from tests.test_vm_properties import ACTORS, _sign_block, blocks
from tests.vm_helpers import KEYS, Chain, addr, default_params

LONG = 40  # the default windows: longer than any run, so no pooled order falls due


def _setup(chain: Chain) -> None:
    """Listing 1 has 2-block windows and is sold out to orders 1 and 2, which fall due
    during the run (order 2's ship-by, order 1's confirm-by); listings 2 and 3 are stocked."""
    chain.block([
        chain.tx("merchant", T.LIST, [0, "short", 300, 2, 2, 2, "", b""]),
        chain.tx("merchant", T.LIST, [0, "tea", 120, 20, 0, 0, "", b""]),
        chain.tx("merchant2", T.LIST, [0, "honey", 450, 20, 0, 0, "", b""]),
    ])
    chain.block([chain.tx("alice", T.BUY, [1, 1, 300, None]),
                 chain.tx("bob", T.BUY, [1, 1, 300, None])])
    chain.block([chain.tx("merchant", T.SHIP, [1, "DHL", "T0", None, "farm", ""])])


def _long_windows(spec):
    """The random specs with every listing's windows left to the (long) defaults."""
    return [[(actor, kind, body[:4] + [0, 0] + body[6:] if kind == T.LIST else body, fee, flaw)
             for actor, kind, body, fee, flaw in block] for block in spec]


def _exact_recheck(chain: Chain, txs) -> list[bytes]:
    """What a re-check that runs every tx at the new height keeps, as the mempool runs it."""
    check = Overlay(chain.state)
    ctx = BlockContext(chain.params.chain_id, chain.height + 1, 0, b"")
    kept = []
    for tx in txs:
        child = Overlay(check)
        if apply_tx(child, chain.params, ctx, tx).code == E.OK:
            child.commit_into_parent()
            kept.append(tx.hash)
    return kept


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blocks(), st.randoms(use_true_random=False))
def test_a_light_re_check_keeps_what_an_exact_one_keeps(spec, rnd: Random) -> None:
    chain = Chain(default_params(default_ship_within=LONG, default_confirm_within=LONG))
    _setup(chain)
    pool = Mempool(chain.params, chain.state, chain.height, 0)
    for block_spec in _long_windows(spec):
        for actor in ACTORS:
            chain.nonces[actor] = pool.next_nonce(addr(KEYS[actor]))
        for raw in _sign_block(chain, block_spec):
            with contextlib.suppress(MempoolError):
                pool.add(pool.decode(raw))
        waiting = pool.txs()
        block = chain.block([t.raw for t in rnd.sample(waiting, rnd.randint(0, len(waiting)))])
        committed = [t.hash for t in block.included]
        done = set(committed)
        left = [t for t in waiting if t.hash not in done]
        left_hashes = {t.hash for t in left}
        pool.update(chain.state, chain.height, 0, committed)
        assert [t.hash for t in pool.txs() if t.hash in left_hashes] == _exact_recheck(chain, left)
