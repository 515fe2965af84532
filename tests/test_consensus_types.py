"""Validator sets, commit certificates, evidence, BFT time, wire formats, module purity."""

from __future__ import annotations

import ast
import pathlib
import sys
from collections import Counter
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from consensus.block import bft_time, weighted_median_time  # noqa: E402
from consensus.errors import (  # noqa: E402
    CommitError,
    ConsensusError,
    EvidenceError,
    MessageError,
    ValidatorSetError,
)
from consensus.messages import (  # noqa: E402
    CommitCertificate,
    CommitMessage,
    CommitSig,
    VoteType,
    decode_message,
    encode_message,
    make_commit,
    make_evidence,
    verify_commit,
    verify_evidence,
)
from consensus.validators import (  # noqa: E402
    Validator,
    ValidatorHistory,
    ValidatorSet,
    ValidatorUpdate,
)
from core.hashing import sha256  # noqa: E402
from tests.sim.harness import CHAIN_ID, Validators, build_block  # noqa: E402

PC = VoteType.PRECOMMIT
H = b"\x11" * 32


def test_validator_set_is_ordered_and_quorums_are_exact_integers():
    vals = Validators(4, [1, 2, 3, 4])
    s = vals.set
    assert [v.pubkey for v in s.validators] == sorted(v.pubkey for v in s.validators)
    assert s.total_power == 10
    assert not s.has_quorum(6) and s.has_quorum(7)  # 3*7 > 20, 3*6 = 18
    assert not s.has_one_third(3) and s.has_one_third(4)
    same = ValidatorSet(reversed(s.validators))
    assert same.hash == s.hash


def test_bad_validator_sets_are_refused():
    with pytest.raises(ValidatorSetError):
        ValidatorSet([])
    with pytest.raises(ValidatorSetError):
        ValidatorSet([Validator(b"\x01" * 32, 1), Validator(b"\x01" * 32, 2)])
    with pytest.raises(ValidatorSetError):
        ValidatorSet([Validator(b"\x01" * 31, 1)])
    with pytest.raises(ValidatorSetError):
        ValidatorSet([Validator(b"\x01" * 32, 0)])
    s = ValidatorSet([Validator(b"\x01" * 32, 1)])
    with pytest.raises(ValidatorSetError):
        s.apply_updates([ValidatorUpdate(b"\x01" * 32, 0)])  # would empty the set


def test_proposer_rotation_is_weighted_and_spread():
    vals = Validators(3, [1, 2, 5])
    s = vals.set
    turns = Counter(s.proposer_index(h, 0) for h in range(800))
    assert [turns[i] for i in range(3)] == [s.power_of(i) * 100 for i in range(3)]
    # consecutive rounds of one height go to different proposers when powers allow it
    equal = Validators(4).set
    assert len({equal.proposer_index(7, r) for r in range(4)}) == 4


def test_updates_and_history():
    vals = Validators(2)
    s = vals.set
    newcomer = b"\x09" * 32
    grown = s.apply_updates([ValidatorUpdate(newcomer, 3),
                             ValidatorUpdate(s.validators[0].pubkey, 0)])
    assert len(grown) == 2 and grown.index_of(newcomer) is not None
    hist = ValidatorHistory.from_genesis(s).with_set_from(5, grown)
    assert hist.at(1) == s and hist.at(4) == s and hist.at(5) == grown and hist.at(99) == grown
    assert ValidatorHistory.from_list(hist.to_list()).at(5) == grown


def _cert(vals, who, block_hash=H, height=1, round_=0):
    return make_commit([vals.vote(i, PC, height, round_, block_hash) for i in who])


def test_commit_certificate_verifies_and_detects_every_defect():
    vals = Validators(4)
    cert = _cert(vals, (0, 1, 2))
    assert verify_commit(cert, vals.set, CHAIN_ID, height=1, block_hash=H) == 3
    assert CommitCertificate.from_list(cert.to_list()) == cert
    with pytest.raises(CommitError):
        verify_commit(_cert(vals, (0, 1)), vals.set, CHAIN_ID)  # 2 of 4
    with pytest.raises(CommitError):
        verify_commit(cert, vals.set, "other-chain")
    with pytest.raises(CommitError):
        verify_commit(cert, vals.set, CHAIN_ID, block_hash=b"\x22" * 32)
    forged = CommitCertificate(1, 0, b"\x22" * 32, cert.signatures)  # signatures for H
    with pytest.raises(CommitError):
        verify_commit(forged, vals.set, CHAIN_ID)
    s = cert.signatures
    doubled = CommitCertificate(1, 0, H, (s[0], s[0], s[1]))
    with pytest.raises(CommitError):
        verify_commit(doubled, vals.set, CHAIN_ID)
    bad_sig = CommitCertificate(1, 0, H, (*s[:2], CommitSig(s[2].validator_index,
                                                            s[2].timestamp_ms, bytes(64))))
    with pytest.raises(CommitError):
        verify_commit(bad_sig, vals.set, CHAIN_ID)


def test_duplicate_vote_evidence_verifies_standalone():
    vals = Validators(4)
    a = vals.vote(2, VoteType.PREVOTE, 3, 1, H)
    b = vals.vote(2, VoteType.PREVOTE, 3, 1, None)
    ev = make_evidence(a, b)
    verify_evidence(ev, vals.set, CHAIN_ID)
    assert make_evidence(b, a) == ev  # canonical order
    with pytest.raises(EvidenceError):
        verify_evidence(make_evidence(a, vals.vote(2, VoteType.PREVOTE, 3, 2, None)),
                        vals.set, CHAIN_ID)  # different rounds
    with pytest.raises(EvidenceError):
        verify_evidence(make_evidence(a, vals.vote(1, VoteType.PREVOTE, 3, 1, None)),
                        vals.set, CHAIN_ID)  # different validators
    with pytest.raises(EvidenceError):
        verify_evidence(ev, vals.set, "other-chain")


def test_bft_time_is_the_weighted_median_and_strictly_increasing():
    vals = Validators(4, [1, 1, 1, 5])
    heavy = max(range(4), key=vals.set.power_of)
    light = iter((10, 20, 30))
    stamps = {i: 25 if i == heavy else next(light) for i in range(4)}
    cert = make_commit([vals.vote(i, PC, 1, 0, H, timestamp=stamps[i]) for i in range(4)])
    assert weighted_median_time(cert, vals.set) == 25  # 5 of 8 power stamped 25
    assert bft_time(cert, vals.set, prev_time_ms=24, genesis_time_ms=0) == 25
    assert bft_time(cert, vals.set, prev_time_ms=10_000, genesis_time_ms=0) == 10_001
    assert bft_time(None, None, 0, genesis_time_ms=777) == 777


def test_messages_roundtrip_and_garbage_is_a_typed_error():
    vals = Validators(4)
    block = build_block(vals)
    vote = vals.vote(1, VoteType.PREVOTE, 1, 0, block.hash)
    prop = vals.proposal(block, 0)
    assert decode_message(encode_message(vote)) == vote
    got = decode_message(encode_message(prop))
    assert got == prop and got.block.hash == block.hash
    commit = CommitMessage(block, _cert(vals, (0, 1, 2), block.hash))
    assert decode_message(encode_message(commit)).certificate == commit.certificate
    for junk in (b"", b"\x00", b"\x92\x02\x90", encode_message(vote)[:-3], b"\xc1" * 10):
        with pytest.raises(MessageError):
            decode_message(junk)


def test_a_blocks_tx_hashes_are_those_of_its_txs_and_not_part_of_its_identity():
    vals = Validators(4)
    block = build_block(vals, txs=[b"set:a=1", b"set:b=2"])
    assert block.tx_hashes() == (sha256(b"set:a=1"), sha256(b"set:b=2"))
    assert block.tx_hashes() is block.tx_hashes()  # computed once
    got = decode_message(encode_message(vals.proposal(block, 0))).block
    assert got == block and got.tx_hashes() == block.tx_hashes()
    other = replace(block, txs=(b"set:c=3",))  # a copy never inherits the hashes
    assert other.tx_hashes() == (sha256(b"set:c=3"),)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_decoding_random_bytes_never_crashes(data):
    try:
        decode_message(data)
    except ConsensusError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_decoding_mutated_messages_never_crashes(data):
    vals = Validators(4)
    raw = bytearray(encode_message(vals.proposal(build_block(vals), 0)))
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    try:
        decode_message(bytes(raw))
    except ConsensusError:
        pass


FORBIDDEN = {"asyncio", "time", "random", "socket", "threading", "commerce_vm", "p2p",
             "storage", "node", "os"}


def test_consensus_package_imports_no_io_clock_randomness_or_siblings():
    for path in sorted((ROOT / "consensus").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"
