"""Blocks: a header that commits to everything, opaque txs, evidence and the last commit.

The block hash is SHA-256 of the canonical header encoding, computed once and cached; the
engine never interprets tx bytes. `app_hash` is the application's state hash AFTER
executing this block's txs, so every validator executes a proposal before prevoting it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from consensus.errors import BlockError, ConsensusError
from consensus.messages import (
    MAX_HEIGHT,
    MAX_TIME_MS,
    CommitCertificate,
    DuplicateVoteEvidence,
)
from consensus.validators import ValidatorSet
from core.address import ADDRESS_SIZE
from core.encoding import encode_trusted
from core.hashing import HASH_SIZE, sha256
from core.keys import validate_chain_id
from core.merkle import EMPTY_ROOT, merkle_root

ZERO_HASH = bytes(HASH_SIZE)
NO_COMMIT_HASH = EMPTY_ROOT  # last_commit_hash of the first block


@dataclass(frozen=True, slots=True)
class Header:
    chain_id: str
    height: int
    time_ms: int
    prev_hash: bytes
    last_commit_hash: bytes
    txs_root: bytes
    app_hash: bytes
    validators_hash: bytes
    next_validators_hash: bytes
    evidence_hash: bytes
    proposer_address: bytes
    hash: bytes = field(default=b"", compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.hash:
            object.__setattr__(self, "hash", sha256(encode_trusted(self.to_list())))

    def to_list(self) -> list:
        return [self.chain_id, self.height, self.time_ms, self.prev_hash, self.last_commit_hash,
                self.txs_root, self.app_hash, self.validators_hash, self.next_validators_hash,
                self.evidence_hash, self.proposer_address]

    @classmethod
    def from_list(cls, value: Any) -> Header:
        if not isinstance(value, list) or len(value) != 11:
            raise BlockError("a header is a list of 11 fields")
        chain_id = value[0]
        try:
            validate_chain_id(chain_id)
        except ValueError as exc:
            raise BlockError(str(exc)) from None
        for what, v in (("height", value[1]), ("time", value[2])):
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= MAX_TIME_MS:
                raise BlockError(f"header {what} must be a non-negative integer")
        if not 1 <= value[1] <= MAX_HEIGHT:
            raise BlockError("header height must be >= 1")
        for i in range(3, 10):
            if not isinstance(value[i], bytes) or len(value[i]) != HASH_SIZE:
                raise BlockError("header hashes are 32 bytes")
        if not isinstance(value[10], bytes) or len(value[10]) != ADDRESS_SIZE:
            raise BlockError("the proposer address is 20 bytes")
        return cls(*value)


@dataclass(frozen=True, slots=True)
class Block:
    header: Header
    txs: tuple[bytes, ...]
    evidence: tuple[DuplicateVoteEvidence, ...]
    last_commit: CommitCertificate | None
    # not an init field: dataclasses.replace must not carry the hashes of other txs over
    _tx_hashes: tuple[bytes, ...] | None = field(default=None, init=False, compare=False,
                                                 repr=False)

    @property
    def hash(self) -> bytes:
        return self.header.hash

    def tx_hashes(self) -> tuple[bytes, ...]:
        """SHA-256 of each tx, computed once: a node looks a proposal's txs up by hash
        when it arrives and again when it executes the block."""
        if self._tx_hashes is None:
            object.__setattr__(self, "_tx_hashes", tuple(map(sha256, self.txs)))
        return self._tx_hashes  # type: ignore[return-value]

    @property
    def height(self) -> int:
        return self.header.height

    def to_list(self) -> list:
        return [self.header.to_list(), list(self.txs), [e.to_list() for e in self.evidence],
                None if self.last_commit is None else self.last_commit.to_list()]

    def encode(self) -> bytes:
        return encode_trusted(self.to_list())

    @classmethod
    def from_list(cls, value: Any) -> Block:
        if not isinstance(value, list) or len(value) != 4:
            raise BlockError("a block is [header, txs, evidence, last_commit]")
        header = Header.from_list(value[0])
        txs, evidence = value[1], value[2]
        if not isinstance(txs, list) or not all(isinstance(t, bytes) for t in txs):
            raise BlockError("txs must be a list of byte strings")
        if not isinstance(evidence, list):
            raise BlockError("evidence must be a list")
        try:
            ev = tuple(DuplicateVoteEvidence.from_list(e) for e in evidence)
            commit = None if value[3] is None else CommitCertificate.from_list(value[3])
        except ConsensusError as exc:
            raise BlockError(str(exc)) from None
        return cls(header, tuple(txs), ev, commit)


def txs_root(txs: tuple[bytes, ...] | list[bytes]) -> bytes:
    return merkle_root(list(txs))


def evidence_root(evidence: tuple[DuplicateVoteEvidence, ...]) -> bytes:
    return merkle_root([e.encode() for e in evidence])


def last_commit_hash(commit: CommitCertificate | None) -> bytes:
    return NO_COMMIT_HASH if commit is None else commit.hash()


def weighted_median_time(commit: CommitCertificate, validators: ValidatorSet) -> int:
    """Median of the precommit timestamps weighted by power: faulty validators with less
    than a third of the power cannot move it outside the range of honest timestamps."""
    stamped = sorted((s.timestamp_ms, validators.power_of(s.validator_index))
                     for s in commit.signatures)
    total = sum(p for _, p in stamped)
    acc = 0
    for ts, power in stamped:
        acc += power
        if 2 * acc > total:
            return ts
    raise BlockError("empty commit has no median time")


def bft_time(commit: CommitCertificate | None, validators: ValidatorSet | None,
             prev_time_ms: int, genesis_time_ms: int) -> int:
    """Time of the block that carries `commit` as its last commit: strictly increasing."""
    if commit is None or validators is None:
        return genesis_time_ms
    return max(weighted_median_time(commit, validators), prev_time_ms + 1)
