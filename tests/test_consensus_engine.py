"""The upon-rules of the Tendermint algorithm, one engine at a time (validator 0 of 4)."""

from __future__ import annotations

import pathlib
import sys

ROOT = str(pathlib.Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from consensus.chain import validate_block  # noqa: E402
from consensus.engine import Phase  # noqa: E402
from consensus.errors import BlockError  # noqa: E402
from consensus.events import (  # noqa: E402
    Commit,
    ProposalReceived,
    ScheduleTimeout,
    TimeoutFired,
    TimeoutStep,
    VoteReceived,
)
from consensus.kvapp import KVApp  # noqa: E402
from consensus.messages import VoteType, verify_commit, verify_evidence  # noqa: E402
from consensus.validators import Validator, ValidatorSet  # noqa: E402
from core.keys import PrivateKey  # noqa: E402
from tests.sim.harness import CHAIN_ID, Driver, Validators, build_block  # noqa: E402

PV, PC = VoteType.PREVOTE, VoteType.PRECOMMIT
NOW = 2_000_000


def setup():
    vals = Validators(4)
    assert [vals.proposer(1, r) for r in range(4)] == [1, 2, 3, 0]
    d = Driver(vals.engine(0))
    d.start()
    return vals, d


def votes(d, vals, vtype, round_, block_hash, who=(1, 2, 3)):
    for i in who:
        d.feed(VoteReceived(vals.vote(i, vtype, 1, round_, block_hash), NOW))


def last_vote(d, vtype):
    return d.votes_sent(vtype)[-1]


def to_round(d, vals, round_):
    """Move validator 0 to `round_` through f+1 messages of that round (round skip)."""
    votes(d, vals, PV, round_, b"\xee" * 32, who=(2, 3))
    assert d.engine.round == round_


def lock_on(d, vals, block, round_):
    d.feed(ProposalReceived(vals.proposal(block, round_), NOW))
    votes(d, vals, PV, round_, block.hash)  # a polka locks even a validator that voted nil
    assert d.engine.locked_round == round_ and d.engine.locked_block.hash == block.hash
    assert last_vote(d, PC).block_hash == block.hash


def test_prevotes_a_valid_proposal_then_locks_and_precommits_on_a_polka():
    vals, d = setup()
    block = build_block(vals, 0)
    d.feed(ProposalReceived(vals.proposal(block, 0), NOW))
    assert last_vote(d, PV).block_hash == block.hash and d.engine.phase == Phase.PREVOTE
    votes(d, vals, PV, 0, block.hash, who=(1,))  # 2 of 4: no polka yet
    assert d.engine.locked_round == -1 and not d.votes_sent(PC)
    votes(d, vals, PV, 0, block.hash, who=(2,))
    assert d.engine.locked_round == 0 and d.engine.valid_round == 0
    assert last_vote(d, PC).block_hash == block.hash


def test_proposal_from_the_wrong_proposer_is_ignored():
    vals, d = setup()
    block = build_block(vals, 0)
    d.feed(ProposalReceived(vals.proposal(block, 0, signer=2), NOW))
    assert not d.votes_sent(PV) and 0 not in d.engine.proposals


def test_locked_validator_prevotes_nil_for_another_block():
    vals, d = setup()
    a = build_block(vals, 0, [b"set:a=1"])
    lock_on(d, vals, a, 0)
    to_round(d, vals, 1)
    b = build_block(vals, 1, [b"set:b=2"])
    d.feed(ProposalReceived(vals.proposal(b, 1), NOW))
    assert last_vote(d, PV).round == 1 and last_vote(d, PV).block_hash is None


def test_locked_validator_prevotes_its_locked_block_when_reproposed():
    vals, d = setup()
    a = build_block(vals, 0)
    lock_on(d, vals, a, 0)
    to_round(d, vals, 1)
    d.feed(ProposalReceived(vals.proposal(a, 1, pol_round=0), NOW))
    assert last_vote(d, PV).round == 1 and last_vote(d, PV).block_hash == a.hash


def test_unlocks_on_a_later_polka_for_another_block():
    vals, d = setup()
    a, b = build_block(vals, 0, [b"set:a=1"]), build_block(vals, 1, [b"set:b=2"])
    lock_on(d, vals, a, 0)
    to_round(d, vals, 1)
    d.feed(ProposalReceived(vals.proposal(b, 1), NOW))
    assert last_vote(d, PV).block_hash is None  # still locked on a
    votes(d, vals, PV, 1, b.hash)  # others formed a polka for b in round 1
    to_round(d, vals, 2)
    d.feed(ProposalReceived(vals.proposal(b, 2, pol_round=1), NOW))
    assert last_vote(d, PV).round == 2 and last_vote(d, PV).block_hash == b.hash


def test_does_not_unlock_on_an_older_polka():
    vals, d = setup()
    a, b = build_block(vals, 0, [b"set:a=1"]), build_block(vals, 1, [b"set:b=2"])
    d.feed(ProposalReceived(vals.proposal(a, 0), NOW))
    votes(d, vals, PV, 0, a.hash, who=(1, 2))  # polka for a in round 0, locks on a ...
    to_round(d, vals, 1)
    lock_on(d, vals, b, 1)  # ... then on b in round 1
    to_round(d, vals, 2)
    d.feed(ProposalReceived(vals.proposal(a, 2, pol_round=0), NOW))
    assert last_vote(d, PV).round == 2 and last_vote(d, PV).block_hash is None


def test_reproposal_waits_for_the_polka_it_claims():
    vals, d = setup()
    a = build_block(vals, 1)
    to_round(d, vals, 1)
    d.feed(ProposalReceived(vals.proposal(a, 1, pol_round=0), NOW))
    assert not [v for v in d.votes_sent(PV) if v.round == 1]
    votes(d, vals, PV, 0, a.hash, who=(1, 2, 3))
    assert last_vote(d, PV).round == 1 and last_vote(d, PV).block_hash == a.hash


def test_invalid_block_gets_a_nil_prevote():
    vals, d = setup()
    good = build_block(vals, 0)
    bad = build_block(vals, 0, [b"set:a=1"])
    # the header claims another app hash than execution gives
    from dataclasses import replace

    from consensus.block import Block
    forged = Block(replace(bad.header, app_hash=good.header.app_hash, hash=b""), bad.txs,
                   bad.evidence, bad.last_commit)
    d.feed(ProposalReceived(vals.proposal(forged, 0), NOW))
    assert last_vote(d, PV).block_hash is None


def test_timeouts_move_through_the_round_and_grow():
    vals, d = setup()
    first = [t for t in d.timeouts if t.step == TimeoutStep.PROPOSE]
    assert first and first[-1].round == 0
    d.feed(TimeoutFired(1, 0, TimeoutStep.PROPOSE, NOW))
    assert last_vote(d, PV).block_hash is None and d.engine.phase == Phase.PREVOTE
    votes(d, vals, PV, 0, b"\x01" * 32, who=(1, 2))  # +2/3 prevotes, no polka
    assert any(t.step == TimeoutStep.PREVOTE for t in d.timeouts)
    d.feed(TimeoutFired(1, 0, TimeoutStep.PREVOTE, NOW))
    assert last_vote(d, PC).block_hash is None
    votes(d, vals, PC, 0, None, who=(1, 2))
    assert any(t.step == TimeoutStep.PRECOMMIT for t in d.timeouts)
    d.feed(TimeoutFired(1, 0, TimeoutStep.PRECOMMIT, NOW))
    assert d.engine.round == 1 and d.engine.phase == Phase.PROPOSE
    propose = {t.round: t.duration_ms for t in d.timeouts if t.step == TimeoutStep.PROPOSE}
    assert propose[1] > propose[0]


def test_stale_timeouts_are_ignored():
    vals, d = setup()
    to_round(d, vals, 2)
    sent = len(d.sent)
    d.feed(TimeoutFired(1, 0, TimeoutStep.PROPOSE, NOW))
    d.feed(TimeoutFired(1, 1, TimeoutStep.PRECOMMIT, NOW))
    assert d.engine.round == 2 and len(d.sent) == sent


def test_nil_polka_precommits_nil():
    vals, d = setup()
    d.feed(TimeoutFired(1, 0, TimeoutStep.PROPOSE, NOW))
    votes(d, vals, PV, 0, None, who=(1, 2))
    assert last_vote(d, PC).block_hash is None and d.engine.phase == Phase.PRECOMMIT


def test_round_skip_needs_more_than_a_third():
    vals, d = setup()
    votes(d, vals, PV, 5, None, who=(2,))
    assert d.engine.round == 0
    votes(d, vals, PC, 5, None, who=(3,))
    assert d.engine.round == 5


def test_late_precommits_for_an_earlier_round_still_commit():
    vals, d = setup()
    a = build_block(vals, 0)
    votes(d, vals, PC, 0, a.hash)  # precommits arrive before the proposal
    to_round(d, vals, 3)
    assert not d.commits
    d.feed(ProposalReceived(vals.proposal(a, 0), NOW))
    assert len(d.commits) == 1
    commit: Commit = d.commits[0]
    assert commit.block.hash == a.hash and commit.certificate.round == 0
    verify_commit(commit.certificate, vals.set, CHAIN_ID, height=1, block_hash=a.hash)
    assert d.engine.height == 2  # finalized, on to the next height


def test_equivocation_creates_evidence_and_is_not_double_counted():
    vals, d = setup()
    a, b = build_block(vals, 0, [b"set:a=1"]), build_block(vals, 1, [b"set:b=2"])
    d.feed(ProposalReceived(vals.proposal(a, 0), NOW))
    d.feed(ProposalReceived(vals.proposal(b, 1), NOW))  # b is a known block now
    votes(d, vals, PV, 0, a.hash, who=(1,))
    votes(d, vals, PV, 0, b.hash, who=(1,))
    assert len(d.evidence) == 1
    ev = d.evidence[0]
    verify_evidence(ev, vals.set, CHAIN_ID)
    assert ev.validator_index == 1 and {ev.vote_a.block_hash, ev.vote_b.block_hash} == {
        a.hash, b.hash}
    vs = d.engine.votes.get(0, PV)
    assert vs.power == 2  # validators 0 and 1, each once
    assert d.engine.locked_round == -1  # a has 2 of 4: no polka
    votes(d, vals, PV, 0, b.hash, who=(1,))  # the same conflicting vote again
    assert len(d.evidence) == 1
    # the proposer of the next height puts it in its block
    template = d.engine._make_template()  # noqa: SLF001
    assert ev in template.evidence


def test_validator_set_updates_take_effect_two_heights_later():
    vals = Validators(1)
    newcomer = PrivateKey(b"\x07" * 32).public_key
    d = Driver(vals.engine(0), KVApp(), txs=[b"val:" + newcomer.hex().encode() + b":5"])
    d.start()  # a lone validator commits heights 1 and 2 by itself
    chain = d.engine.chain
    old, new = vals.set, ValidatorSet([*vals.set.validators, Validator(newcomer, 5)])
    assert chain.validators.at(2) == old and chain.validators.at(3) == new
    block2 = d.commits[1].block
    assert block2.header.validators_hash == old.hash
    assert block2.header.next_validators_hash == new.hash
    assert d.engine.height == 3 and len(d.commits) == 2  # 1 of 6 power cannot commit alone


def test_block_with_wrong_validator_hashes_is_rejected():
    vals = Validators(4)
    block = build_block(vals)
    from dataclasses import replace

    from consensus.block import Block
    bad = Block(replace(block.header, next_validators_hash=b"\x00" * 32, hash=b""), block.txs,
                block.evidence, block.last_commit)
    validate_block(block, vals.genesis)
    try:
        validate_block(bad, vals.genesis)
    except BlockError as exc:
        assert "next_validators_hash" in str(exc)
    else:
        raise AssertionError("a wrong next_validators_hash was accepted")


def test_observer_follows_without_signing():
    vals, _ = setup()
    d = Driver(vals.engine(None))
    d.start()
    a = build_block(vals, 0)
    d.feed(ProposalReceived(vals.proposal(a, 0), NOW))
    votes(d, vals, PC, 0, a.hash)
    assert not d.sent and len(d.commits) == 1


def test_future_height_messages_are_buffered_with_a_bound():
    vals, d = setup()
    for r in range(100):
        d.feed(VoteReceived(vals.vote(1, PV, 2, r, None), NOW))
    assert sum(len(q) for q in d.engine._future.values()) == (  # noqa: SLF001
        d.engine.config.future_messages_per_validator)
    assert isinstance(d.timeouts[0], ScheduleTimeout)


def test_commit_timeout_delays_the_next_height():
    from consensus.engine import EngineConfig

    vals = Validators(1)
    config = EngineConfig(gossip_interval_ms=0, timeout_commit_ms=500)
    d = Driver(vals.engine(0, config=config))
    d.start()
    assert len(d.commits) == 1 and d.engine.height == 2 and d.engine.phase == Phase.NEW_HEIGHT
    wait = [t for t in d.timeouts if t.step == TimeoutStep.COMMIT]
    assert wait and wait[-1].height == 2 and wait[-1].duration_ms == 500
    d.feed(TimeoutFired(2, 0, TimeoutStep.COMMIT, NOW))
    assert len(d.commits) == 2 and d.engine.height == 3
    block2 = d.commits[1].block
    assert block2.header.time_ms > d.commits[0].block.header.time_ms  # BFT time increases
    verify_commit(block2.last_commit, vals.set, CHAIN_ID, height=1,
                  block_hash=d.commits[0].block.hash)


def test_a_certified_block_decides_at_once_even_during_the_commit_pause():
    """Block sync feeds decided blocks back to back; none may wait for timeout_commit."""
    from consensus.engine import EngineConfig
    from consensus.events import CommitReceived

    vals = Validators(1)
    config = EngineConfig(gossip_interval_ms=0, timeout_commit_ms=500)
    producer = Driver(vals.engine(0, config=config))
    producer.start()
    producer.feed(TimeoutFired(2, 0, TimeoutStep.COMMIT, NOW))
    first, second = producer.commits[0], producer.commits[1]
    follower = Driver(vals.engine(None, config=config))
    follower.start()
    follower.feed(CommitReceived(first.block, first.certificate, NOW))
    assert follower.engine.height == 2 and follower.engine.phase == Phase.NEW_HEIGHT
    follower.feed(CommitReceived(second.block, second.certificate, NOW))
    assert [c.block.hash for c in follower.commits] == [first.block.hash, second.block.hash]
    assert follower.engine.height == 3
