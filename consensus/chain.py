"""What the engine knows about the committed chain, and block validation against it.

`ChainState` is the small record a node persists together with each committed block (in
the same atomic write) so that a restarted engine knows where it stands: last height, last
block hash and time, the last commit, and the validator-set history (updates returned by
the application at height H are in force from H+2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from consensus.block import (
    ZERO_HASH,
    Block,
    bft_time,
    evidence_root,
    last_commit_hash,
    txs_root,
)
from consensus.errors import BlockError, ConsensusError
from consensus.messages import CommitCertificate, verify_commit, verify_evidence
from consensus.sigcache import DEFAULT_CACHE, SignatureCache
from consensus.validators import ValidatorHistory, ValidatorSet, ValidatorUpdate
from core.encoding import decode, encode
from core.errors import DecodeError


@dataclass(frozen=True, slots=True)
class BlockLimits:
    max_txs: int = 10_000
    max_block_bytes: int = 4 * 1024 * 1024
    max_evidence: int = 16
    evidence_max_age: int = 100_000  # heights


@dataclass(frozen=True, slots=True)
class ChainState:
    chain_id: str
    genesis_time_ms: int
    initial_height: int
    last_height: int  # initial_height - 1 before the first block
    last_block_hash: bytes
    last_block_time_ms: int
    last_commit: CommitCertificate | None
    validators: ValidatorHistory

    @classmethod
    def genesis(cls, chain_id: str, validators: ValidatorSet, genesis_time_ms: int,
                initial_height: int = 1) -> ChainState:
        return cls(chain_id, genesis_time_ms, initial_height, initial_height - 1, ZERO_HASH,
                   genesis_time_ms, None, ValidatorHistory.from_genesis(validators, initial_height))

    @property
    def next_height(self) -> int:
        return self.last_height + 1

    def advance(self, block: Block, commit: CommitCertificate,
                updates: Sequence[ValidatorUpdate]) -> ChainState:
        """The state after committing `block` (height H) whose app returned `updates`."""
        h = block.height
        history = self.validators
        if updates:
            history = history.with_set_from(h + 2, history.at(h + 1).apply_updates(updates))
        return replace(self, last_height=h, last_block_hash=block.hash,
                       last_block_time_ms=block.header.time_ms, last_commit=commit,
                       validators=history)

    def to_list(self) -> list:
        return [self.chain_id, self.genesis_time_ms, self.initial_height, self.last_height,
                self.last_block_hash, self.last_block_time_ms,
                None if self.last_commit is None else self.last_commit.to_list(),
                self.validators.to_list()]

    def encode(self) -> bytes:
        return encode(self.to_list())

    @classmethod
    def decode(cls, data: bytes) -> ChainState:
        try:
            f: Any = decode(data)
            if not isinstance(f, list) or len(f) != 8:
                raise ConsensusError("a chain state is a list of 8 fields")
            commit = None if f[6] is None else CommitCertificate.from_list(f[6])
            return cls(f[0], f[1], f[2], f[3], f[4], f[5], commit,
                       ValidatorHistory.from_list(f[7]))
        except (DecodeError, ConsensusError) as exc:
            raise ConsensusError(f"bad chain state: {exc}") from None


def body_matches_header(block: Block) -> bool:
    """True when txs, evidence and last commit are the ones the header commits to. A block
    that fails this is not the block its hash names (a relay corrupted it), so it says
    nothing about the proposer and must simply be dropped."""
    hd = block.header
    return (hd.txs_root == txs_root(block.txs)
            and hd.evidence_hash == evidence_root(block.evidence)
            and hd.last_commit_hash == last_commit_hash(block.last_commit))


def validate_block(block: Block, state: ChainState, limits: BlockLimits = BlockLimits(),
                   cache: SignatureCache = DEFAULT_CACHE, body_checked: bool = False) -> None:
    """Check every header field the consensus layer owns (everything but app_hash, which
    the application checks by executing the block). Raises BlockError. `body_checked`
    skips re-hashing txs and evidence when body_matches_header already passed."""
    hd = block.header
    h = state.next_height
    if hd.chain_id != state.chain_id:
        raise BlockError("block is for another chain")
    if hd.height != h:
        raise BlockError(f"block height {hd.height}, expected {h}")
    if hd.prev_hash != state.last_block_hash:
        raise BlockError("block does not extend the last committed block")
    prev_validators = None
    if h == state.initial_height:
        if block.last_commit is not None:
            raise BlockError("the first block has no last commit")
    else:
        if block.last_commit is None:
            raise BlockError("block lacks the commit of its parent")
        prev_validators = state.validators.at(h - 1)
        try:
            verify_commit(block.last_commit, prev_validators, state.chain_id,
                          height=h - 1, block_hash=state.last_block_hash, cache=cache)
        except ConsensusError as exc:
            raise BlockError(f"last commit: {exc}") from None
    if hd.last_commit_hash != last_commit_hash(block.last_commit):
        raise BlockError("last_commit_hash does not match the last commit")
    expected_time = bft_time(block.last_commit, prev_validators, state.last_block_time_ms,
                             state.genesis_time_ms)
    if hd.time_ms != expected_time:
        raise BlockError(f"block time {hd.time_ms} is not the BFT time {expected_time}")
    if len(block.txs) > limits.max_txs or sum(map(len, block.txs)) > limits.max_block_bytes:
        raise BlockError("block exceeds the tx limits")
    if not body_checked and hd.txs_root != txs_root(block.txs):
        raise BlockError("txs_root does not match the txs")
    _validate_evidence(block, state, limits, cache, body_checked)
    validators = state.validators.at(h)
    if hd.validators_hash != validators.hash:
        raise BlockError("validators_hash is not the hash of the current validator set")
    if hd.next_validators_hash != state.validators.at(h + 1).hash:
        raise BlockError("next_validators_hash is not the hash of the next validator set")
    if hd.proposer_address not in validators.addresses:
        raise BlockError("the proposer is not a validator")


def _validate_evidence(block: Block, state: ChainState, limits: BlockLimits,
                       cache: SignatureCache, body_checked: bool) -> None:
    h = block.height
    if len(block.evidence) > limits.max_evidence:
        raise BlockError("too much evidence in one block")
    if not body_checked and block.header.evidence_hash != evidence_root(block.evidence):
        raise BlockError("evidence_hash does not match the evidence")
    seen: set[bytes] = set()
    for ev in block.evidence:
        if not h - limits.evidence_max_age <= ev.height <= h:
            raise BlockError("evidence is too old or from the future")
        key = ev.hash()
        if key in seen:
            raise BlockError("the same evidence twice in one block")
        seen.add(key)
        try:
            verify_evidence(ev, state.validators.at(ev.height), state.chain_id, cache)
        except ConsensusError as exc:
            raise BlockError(f"evidence: {exc}") from None
