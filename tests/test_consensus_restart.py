"""Crash-restart: the signing guard and the WAL never let a validator double-sign."""

from __future__ import annotations

import pathlib
import sys

import pytest

ROOT = str(pathlib.Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from consensus.engine import EngineConfig  # noqa: E402
from consensus.errors import SigningRefused  # noqa: E402
from consensus.events import (  # noqa: E402
    AppendWAL,
    Broadcast,
    CommitReceived,
    PersistSigningState,
    ProposalReceived,
    TimeoutFired,
    TimeoutStep,
    VoteReceived,
    decode_event,
    encode_event,
)
from consensus.messages import (  # noqa: E402
    Proposal,
    Step,
    Vote,
    VoteType,
    make_commit,
    vote_sign_bytes,
)
from consensus.signing import SigningGuard, SigningState  # noqa: E402
from core.keys import PrivateKey  # noqa: E402
from tests.sim.harness import CHAIN_ID, Driver, Validators, build_block  # noqa: E402

NOW = 2_000_000


def prevote_bytes(block_hash, ts=5, round_=0):
    return vote_sign_bytes(VoteType.PREVOTE, 1, round_, block_hash, ts, 0)


def test_guard_signs_forward_only_and_reuses_identical_messages():
    guard = SigningGuard(PrivateKey(b"\x01" * 32), CHAIN_ID)
    a = b"\xaa" * 32
    used, sig, state = guard.sign(1, 0, Step.PREVOTE, prevote_bytes(a))
    assert state is not None and state.hrs() == (1, 0, 2)
    again = guard.sign(1, 0, Step.PREVOTE, prevote_bytes(a))
    assert again == (used, sig, None)  # same message: same signature, nothing to persist
    later_ts = guard.sign(1, 0, Step.PREVOTE, prevote_bytes(a, ts=99))
    assert later_ts[0] == used and later_ts[1] == sig  # only the timestamp differs: reuse
    with pytest.raises(SigningRefused):
        guard.sign(1, 0, Step.PREVOTE, prevote_bytes(None))  # conflicting
    guard.sign(1, 0, Step.PRECOMMIT, vote_sign_bytes(VoteType.PRECOMMIT, 1, 0, a, 5, 0))
    with pytest.raises(SigningRefused):
        guard.sign(1, 0, Step.PREVOTE, prevote_bytes(a))  # an earlier step
    restored = SigningGuard(PrivateKey(b"\x01" * 32), CHAIN_ID,
                            SigningState.decode(guard.state.encode()))
    with pytest.raises(SigningRefused):
        restored.sign(1, 0, Step.PRECOMMIT, vote_sign_bytes(VoteType.PRECOMMIT, 1, 0, None, 5, 0))


def _prevote_round0(vals):
    d = Driver(vals.engine(0))
    d.start()
    block = build_block(vals, 0)
    actions = d.feed(ProposalReceived(vals.proposal(block, 0), NOW))
    return d, block, actions


def test_persist_comes_before_the_broadcast_it_covers():
    vals = Validators(4)
    _, _, actions = _prevote_round0(vals)
    kinds = [type(a) for a in actions]
    persist = kinds.index(PersistSigningState)
    broadcast = kinds.index(Broadcast)
    assert persist < broadcast
    assert max(i for i, k in enumerate(kinds) if k is AppendWAL) < persist


def _restart(vals, wal, signing):
    d = Driver(vals.engine(0, signing=signing))
    d.start()
    d._run(d.engine.replay([decode_event(e) for h, e in wal if h == 1]))  # noqa: SLF001
    return d


def _own_prevotes(d, round_=0):
    return [m for m in d.sent if isinstance(m, Vote) and m.type == VoteType.PREVOTE
            and m.round == round_]


def test_crash_after_persist_before_broadcast_resends_the_same_vote():
    vals = Validators(4)
    d, block, actions = _prevote_round0(vals)
    cut = [type(a) for a in actions].index(PersistSigningState) + 1
    wal = [(a.height, a.entry) for a in actions[:cut] if isinstance(a, AppendWAL)]
    signed = next(a.message for a in actions if isinstance(a, Broadcast))
    # crash: the broadcast never happened, the signing state and the WAL are on disk
    r = _restart(vals, wal, d.signing)
    assert [v.signature for v in _own_prevotes(r)] == [signed.signature]
    r.feed(TimeoutFired(1, 0, TimeoutStep.PROPOSE, NOW))  # would be a nil prevote
    assert all(v.block_hash == block.hash for v in _own_prevotes(r))


def test_crash_after_broadcast_never_signs_a_conflicting_vote():
    vals = Validators(4)
    d, block, _ = _prevote_round0(vals)
    r = _restart(vals, d.wal, d.signing)
    r.feed(TimeoutFired(1, 0, TimeoutStep.PROPOSE, NOW))
    assert {v.block_hash for v in _own_prevotes(r)} <= {block.hash}
    assert r.engine.proposals[0].block_hash == block.hash  # resumed the height in progress


def test_restart_with_lost_wal_refuses_to_sign_conflicts():
    vals = Validators(4)
    d, block, _ = _prevote_round0(vals)
    r = _restart(vals, [], d.signing)  # only the signing state survived
    r.feed(TimeoutFired(1, 0, TimeoutStep.PROPOSE, NOW))
    assert not _own_prevotes(r)  # a nil prevote at (1, 0) would conflict: refused
    # it still takes part from the next round on
    for i in (2, 3):
        r.feed(VoteReceived(vals.vote(i, VoteType.PREVOTE, 1, 1, None), NOW))
    assert r.engine.round == 1
    r.feed(TimeoutFired(1, 1, TimeoutStep.PROPOSE, NOW))
    assert [v.block_hash for v in _own_prevotes(r, 1)] == [None]


def test_wal_entries_roundtrip():
    vals = Validators(4)
    d, _, _ = _prevote_round0(vals)
    assert d.wal
    for _, entry in d.wal:
        assert encode_event(decode_event(entry)) == entry


def _crash_at(d, index):
    """What a crash right after `d`'s action `index`, a signing-state save, leaves: that
    state, and the WAL entries before it (the driver syncs the WAL before it saves)."""
    entries = [(a.height, a.entry) for a in d.actions[:index] if isinstance(a, AppendWAL)]
    return entries, d.actions[index].state


def _restart_before_build(vals, wal, signing):
    """Restart and replay before the build the engine asks for is answered (a real driver
    waits for txs first), so the replayed ProposalBuilt is what proposes and votes."""
    d = Driver(vals.engine(0, signing=signing), auto_finalize=False)
    d.engine.start(d.now)
    d._run(d.engine.replay([decode_event(e) for h, e in wal if h == 1]))  # noqa: SLF001
    return d


def test_votes_signed_during_a_replay_survive_a_second_crash():
    """A lone validator crashes after signing its proposal; the restart's replay signs its
    prevote and precommit anew, and it crashes again before the commit. The second restart
    must still decide: the guard now refuses both votes, so they must be in the WAL."""
    vals = Validators(1)
    first = Driver(vals.engine(0), auto_finalize=False)
    first.start()
    assert first.commits  # alone, it decides at once
    saves = [i for i, a in enumerate(first.actions) if isinstance(a, PersistSigningState)]
    wal, signing = _crash_at(first, saves[0])  # the proposal's
    assert signing.hrs()[2] == Step.PROPOSE
    again = _restart_before_build(vals, wal, signing)
    assert again.commits
    saves = [i for i, a in enumerate(again.actions) if isinstance(a, PersistSigningState)]
    more, signing = _crash_at(again, saves[-1])
    assert signing.hrs()[2] == Step.PRECOMMIT
    last = _restart_before_build(vals, wal + more, signing)
    assert last.commits, "the validator could not vote again at its height"
    assert last.commits[0].block.hash == first.commits[0].block.hash


def test_a_proposer_killed_between_its_wal_appends_and_a_save_never_equivocates():
    """A kill -9 keeps the WAL appends (they are in the page cache) but loses a signing-state
    save that had not run. The proposer's replayed build then makes another block: a
    precommit that came in late extended its last commit in memory only. At every such
    crash point nothing it sends, before the crash and after the restart, may hold two
    prevotes or two proposals for one round, nor evidence against itself. (One save shared
    by the proposal and the prevote, tried once, left both in the WAL above the saved
    state, and the replay re-sent the old prevote beside the new one.)"""
    config = EngineConfig(gossip_interval_ms=0, timeout_commit_ms=200)
    vals = Validators(4)
    first = build_block(vals, 0)
    proposer = vals.proposer(2, 0, None)
    late = next(i for i in range(4) if i != proposer)
    cert = make_commit([vals.vote(i, VoteType.PRECOMMIT, 1, 0, first.hash)
                        for i in range(4) if i != late])
    d = Driver(vals.engine(proposer, config=config))
    d.start()
    d.feed(CommitReceived(first, cert, NOW))
    stored_chain = d.engine.chain  # what the commit of height 1 wrote
    d.feed(VoteReceived(vals.vote(late, VoteType.PRECOMMIT, 1, 0, first.hash), NOW))
    start = len(d.actions)
    d.feed(TimeoutFired(2, 0, TimeoutStep.COMMIT, NOW + 1))  # builds, proposes, prevotes
    height2 = d.actions[start:]
    saves = [i for i, a in enumerate(height2) if isinstance(a, PersistSigningState)]
    assert saves
    for at in saves:
        wal = [decode_event(a.entry) for a in height2[:at]
               if isinstance(a, AppendWAL) and a.height == 2]
        saved = [a.state for a in height2[:at] if isinstance(a, PersistSigningState)]
        r = Driver(vals.engine(proposer, chain=stored_chain, config=config,
                               signing=saved[-1] if saved else None), auto_finalize=False)
        r.engine.start(r.now)
        r._run(r.engine.replay(wal))  # noqa: SLF001
        r.engine.config = EngineConfig(gossip_interval_ms=2000, timeout_commit_ms=200)
        r.feed(TimeoutFired(2, 0, TimeoutStep.GOSSIP, NOW + 5))  # re-sends its own messages
        sent = [a.message for a in height2[:at] if isinstance(a, Broadcast)] + r.sent
        prevotes = {(m.round, m.block_hash) for m in sent
                    if isinstance(m, Vote) and m.type == VoteType.PREVOTE and m.height == 2}
        proposals = {(m.round, m.block_hash) for m in sent
                     if isinstance(m, Proposal) and m.height == 2}
        assert len(prevotes) <= 1 and len(proposals) <= 1, f"crash before action {at}"
        assert not r.evidence, f"crash before action {at}: evidence against itself"
