"""Signed consensus messages: votes, proposals, commit certificates, duplicate-vote evidence.

Every record is a positional list in the canonical encoding. A signature covers the domain
tag, the chain id and the canonical `sign_bytes`, never the wire form, so the signature is
not part of what it signs. Parsing from untrusted lists raises MessageError (or the more
specific CommitError / EvidenceError) and never anything else.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from consensus.errors import CommitError, EvidenceError, MessageError
from consensus.sigcache import DEFAULT_CACHE, SignatureCache
from consensus.validators import ValidatorSet
from core.encoding import decode, encode_trusted
from core.errors import DecodeError
from core.hashing import HASH_SIZE, sha256
from core.keys import DOMAIN_PROPOSAL, DOMAIN_VOTE, SIGNATURE_SIZE, signing_payload

MAX_HEIGHT = 2**62
MAX_ROUND = 2**31
MAX_TIME_MS = 2**62


class VoteType(IntEnum):
    PREVOTE = 1
    PRECOMMIT = 2


class Step(IntEnum):
    """Signing steps in the order they happen inside one (height, round)."""

    PROPOSE = 1
    PREVOTE = 2
    PRECOMMIT = 3


def _int(value: Any, lo: int, hi: int, what: str, error: type = MessageError) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise error(f"{what} must be an integer in [{lo}, {hi}]")
    return value


def _hash(value: Any, what: str, nil_ok: bool = False, error: type = MessageError) -> bytes | None:
    if value is None and nil_ok:
        return None
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise error(f"{what} must be a 32-byte hash")
    return value


def _sig(value: Any, error: type = MessageError) -> bytes:
    if not isinstance(value, bytes) or len(value) != SIGNATURE_SIZE:
        raise error("a signature is 64 bytes")
    return value


def _list(value: Any, size: int, what: str, error: type = MessageError) -> list:
    if not isinstance(value, list) or len(value) != size:
        raise error(f"{what} must be a list of {size} fields")
    return value


# --- votes -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Vote:
    type: VoteType
    height: int
    round: int
    block_hash: bytes | None  # None is a vote for nil
    timestamp_ms: int
    validator_index: int
    signature: bytes = b""
    sign_bytes: bytes = field(default=b"", compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.sign_bytes:
            object.__setattr__(
                self,
                "sign_bytes",
                vote_sign_bytes(
                    self.type, self.height, self.round, self.block_hash,
                    self.timestamp_ms, self.validator_index,
                ),
            )

    def to_list(self) -> list:
        return [int(self.type), self.height, self.round, self.block_hash,
                self.timestamp_ms, self.validator_index, self.signature]

    @classmethod
    def from_list(cls, value: Any, error: type = MessageError) -> Vote:
        f = _list(value, 7, "a vote", error)
        vtype = _int(f[0], 1, 2, "vote type", error)
        return cls(
            VoteType(vtype),
            _int(f[1], 1, MAX_HEIGHT, "height", error),
            _int(f[2], 0, MAX_ROUND, "round", error),
            _hash(f[3], "block hash", nil_ok=True, error=error),
            _int(f[4], 0, MAX_TIME_MS, "timestamp", error),
            _int(f[5], 0, 2**16, "validator index", error),
            _sig(f[6], error),
        )

    def payload(self, chain_id: str) -> bytes:
        return signing_payload(DOMAIN_VOTE, chain_id, self.sign_bytes)

    def verify(self, pubkey: bytes, chain_id: str, cache: SignatureCache = DEFAULT_CACHE) -> bool:
        return cache.verify(pubkey, self.payload(chain_id), self.signature)


def vote_sign_bytes(vtype: int, height: int, round_: int, block_hash: bytes | None,
                    timestamp_ms: int, validator_index: int) -> bytes:
    return encode_trusted([int(vtype), height, round_, block_hash, timestamp_ms, validator_index])


def verify_vote(vote: Vote, validators: ValidatorSet, chain_id: str,
                cache: SignatureCache = DEFAULT_CACHE) -> bool:
    if vote.validator_index >= len(validators):
        return False
    return vote.verify(validators.validators[vote.validator_index].pubkey, chain_id, cache)


# --- proposals -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Proposal:
    """A proposer's signed claim on (height, round). Carries the block on the wire."""

    height: int
    round: int
    pol_round: int  # -1, or the round of the polka that justifies re-proposing the block
    block_hash: bytes
    timestamp_ms: int
    signature: bytes
    block: Any = field(default=None, compare=False, repr=False)  # consensus.block.Block

    @property
    def sign_bytes(self) -> bytes:
        return proposal_sign_bytes(self.height, self.round, self.pol_round, self.block_hash,
                                   self.timestamp_ms)

    def payload(self, chain_id: str) -> bytes:
        return signing_payload(DOMAIN_PROPOSAL, chain_id, self.sign_bytes)


def proposal_sign_bytes(height: int, round_: int, pol_round: int, block_hash: bytes,
                        timestamp_ms: int) -> bytes:
    return encode_trusted([height, round_, pol_round, block_hash, timestamp_ms])


# --- commit certificates ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommitSig:
    validator_index: int
    timestamp_ms: int
    signature: bytes


@dataclass(frozen=True, slots=True)
class CommitCertificate:
    """+2/3 precommits of one round for one block: proof that the block is final."""

    height: int
    round: int
    block_hash: bytes
    signatures: tuple[CommitSig, ...]  # sorted by validator index, one per validator

    def votes(self) -> Iterator[Vote]:
        for s in self.signatures:
            yield Vote(VoteType.PRECOMMIT, self.height, self.round, self.block_hash,
                       s.timestamp_ms, s.validator_index, s.signature)

    def to_list(self) -> list:
        return [self.height, self.round, self.block_hash,
                [[s.validator_index, s.timestamp_ms, s.signature] for s in self.signatures]]

    @classmethod
    def from_list(cls, value: Any) -> CommitCertificate:
        f = _list(value, 4, "a commit", CommitError)
        if not isinstance(f[3], list):
            raise CommitError("commit signatures must be a list")
        sigs = []
        for item in f[3]:
            s = _list(item, 3, "a commit signature", CommitError)
            sigs.append(CommitSig(_int(s[0], 0, 2**16, "validator index", CommitError),
                                  _int(s[1], 0, MAX_TIME_MS, "timestamp", CommitError),
                                  _sig(s[2], CommitError)))
        indexes = [s.validator_index for s in sigs]
        if indexes != sorted(set(indexes)):
            raise CommitError("commit signatures must be sorted by validator, without repeats")
        return cls(_int(f[0], 1, MAX_HEIGHT, "height", CommitError),
                   _int(f[1], 0, MAX_ROUND, "round", CommitError),
                   _hash(f[2], "block hash", error=CommitError), tuple(sigs))

    def encode(self) -> bytes:
        return encode_trusted(self.to_list())

    def hash(self) -> bytes:
        return sha256(self.encode())


def make_commit(votes: list[Vote]) -> CommitCertificate:
    """Certificate from precommits of one round for one block (caller checked the quorum)."""
    first = votes[0]
    sigs = sorted((CommitSig(v.validator_index, v.timestamp_ms, v.signature) for v in votes),
                  key=lambda s: s.validator_index)
    return CommitCertificate(first.height, first.round, first.block_hash, tuple(sigs))


def verify_commit(cert: CommitCertificate, validators: ValidatorSet, chain_id: str, *,
                  height: int | None = None, block_hash: bytes | None = None,
                  cache: SignatureCache = DEFAULT_CACHE) -> int:
    """Check that `cert` proves +2/3 of `validators` precommitted its block.

    `validators` must be the set in force at `cert.height`. Returns the signed power;
    raises CommitError otherwise. Usable by block sync and light clients.
    """
    if height is not None and cert.height != height:
        raise CommitError(f"commit is for height {cert.height}, expected {height}")
    if block_hash is not None and cert.block_hash != block_hash:
        raise CommitError("commit is for another block")
    power = 0
    last = -1
    for vote in cert.votes():
        if vote.validator_index <= last:
            raise CommitError("commit signatures must be sorted by validator, without repeats")
        last = vote.validator_index
        if not verify_vote(vote, validators, chain_id, cache):
            raise CommitError(f"bad precommit signature of validator {vote.validator_index}")
        power += validators.power_of(vote.validator_index)
    if not validators.has_quorum(power):
        raise CommitError("commit does not carry +2/3 of the voting power")
    return power


# --- evidence --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DuplicateVoteEvidence:
    """Two votes of one validator for one (height, round, type) with different blocks."""

    vote_a: Vote
    vote_b: Vote

    @property
    def height(self) -> int:
        return self.vote_a.height

    @property
    def validator_index(self) -> int:
        return self.vote_a.validator_index

    def to_list(self) -> list:
        return [self.vote_a.to_list(), self.vote_b.to_list()]

    @classmethod
    def from_list(cls, value: Any) -> DuplicateVoteEvidence:
        f = _list(value, 2, "evidence", EvidenceError)
        return cls(Vote.from_list(f[0], EvidenceError), Vote.from_list(f[1], EvidenceError))

    def encode(self) -> bytes:
        return encode_trusted(self.to_list())

    def hash(self) -> bytes:
        return sha256(self.encode())


def _order_key(vote: Vote) -> bytes:
    return vote.block_hash or b""


def make_evidence(first: Vote, second: Vote) -> DuplicateVoteEvidence:
    a, b = sorted((first, second), key=_order_key)
    return DuplicateVoteEvidence(a, b)


def verify_evidence(ev: DuplicateVoteEvidence, validators: ValidatorSet, chain_id: str,
                    cache: SignatureCache = DEFAULT_CACHE) -> None:
    """Raise EvidenceError unless `ev` proves an equivocation. `validators` is the set at
    the evidence's height."""
    a, b = ev.vote_a, ev.vote_b
    if (a.type, a.height, a.round, a.validator_index) != (b.type, b.height, b.round,
                                                          b.validator_index):
        raise EvidenceError("the two votes are not for the same height, round, type and signer")
    if _order_key(a) >= _order_key(b):
        raise EvidenceError("evidence votes must be for different blocks, in canonical order")
    for vote in (a, b):
        if not verify_vote(vote, validators, chain_id, cache):
            raise EvidenceError("an evidence vote does not carry a valid signature")


# --- wire messages ---------------------------------------------------------------------

MSG_PROPOSAL = 1
MSG_VOTE = 2
MSG_COMMIT = 3  # a decided block with its certificate, sent to a peer that lags behind
MAX_MESSAGE_SIZE = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class CommitMessage:
    block: Any  # consensus.block.Block
    certificate: CommitCertificate


def encode_message(msg: Proposal | Vote | CommitMessage) -> bytes:
    if isinstance(msg, Vote):
        return encode_trusted([MSG_VOTE, msg.to_list()])
    if isinstance(msg, Proposal):
        return encode_trusted([MSG_PROPOSAL, [msg.height, msg.round, msg.pol_round,
                                              msg.block_hash, msg.timestamp_ms, msg.signature,
                                              msg.block.to_list()]])
    return encode_trusted([MSG_COMMIT, [msg.block.to_list(), msg.certificate.to_list()]])


def proposal_from_list(value: Any) -> Proposal:
    from consensus.block import Block  # block imports this module

    f = _list(value, 7, "a proposal")
    height = _int(f[0], 1, MAX_HEIGHT, "height")
    round_ = _int(f[1], 0, MAX_ROUND, "round")
    pol_round = _int(f[2], -1, MAX_ROUND, "pol round")
    if pol_round >= round_:
        raise MessageError("pol round must be below the proposal's round")
    block = Block.from_list(f[6])
    block_hash = _hash(f[3], "block hash")
    if block.hash != block_hash or block.header.height != height:
        raise MessageError("proposal does not match its block")
    return Proposal(height, round_, pol_round, block_hash,
                    _int(f[4], 0, MAX_TIME_MS, "timestamp"), _sig(f[5]), block)


def decode_message(data: bytes, max_size: int = MAX_MESSAGE_SIZE) -> Proposal | Vote | CommitMessage:
    """Parse a consensus message from the wire. Raises MessageError (a ConsensusError)."""
    from consensus.block import Block
    from consensus.errors import ConsensusError

    try:
        value = decode(data, max_size)
    except DecodeError as exc:
        raise MessageError(f"undecodable message: {exc}") from None
    f = _list(value, 2, "a message")
    try:
        if f[0] == MSG_VOTE:
            return Vote.from_list(f[1])
        if f[0] == MSG_PROPOSAL:
            return proposal_from_list(f[1])
        if f[0] == MSG_COMMIT:
            c = _list(f[1], 2, "a commit message")
            return CommitMessage(Block.from_list(c[0]), CommitCertificate.from_list(c[1]))
    except MessageError:
        raise
    except ConsensusError as exc:
        raise MessageError(str(exc)) from None
    raise MessageError("unknown message kind")
