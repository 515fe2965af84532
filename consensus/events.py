"""Engine inputs (events) and outputs (actions), and the WAL encoding of events.

Every event carries `now_ms`, the driver's clock (virtual time in the simulator); the engine
uses it only for vote timestamps and proposal timestamps and never reads a clock itself.
Actions must be executed by the driver in the order they are returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from consensus.block import Block
from consensus.errors import ConsensusError, WALError
from consensus.messages import (
    CommitCertificate,
    DuplicateVoteEvidence,
    Proposal,
    Vote,
    proposal_from_list,
)
from consensus.signing import SigningState
from consensus.validators import ValidatorUpdate
from core.encoding import decode, encode_trusted
from core.errors import DecodeError


class TimeoutStep(IntEnum):
    PROPOSE = 1
    PREVOTE = 2
    PRECOMMIT = 3
    COMMIT = 4  # pause after a commit before round 0 of the next height
    GOSSIP = 5  # periodic re-broadcast of our own messages of the current height


# --- events ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProposalReceived:
    proposal: Proposal
    now_ms: int


@dataclass(frozen=True, slots=True)
class VoteReceived:
    vote: Vote
    now_ms: int


@dataclass(frozen=True, slots=True)
class CommitReceived:
    """A decided block with its certificate (from a peer ahead of us, or block sync)."""

    block: Block
    certificate: CommitCertificate
    now_ms: int


@dataclass(frozen=True, slots=True)
class TimeoutFired:
    height: int
    round: int
    step: TimeoutStep
    now_ms: int


@dataclass(frozen=True, slots=True)
class ProposalBuilt:
    """Answer to BuildProposal: the application's txs and post-state app hash."""

    height: int
    round: int
    txs: tuple[bytes, ...]
    app_hash: bytes
    now_ms: int


@dataclass(frozen=True, slots=True)
class ProposalProcessed:
    """Answer to ProcessProposal."""

    height: int
    block_hash: bytes
    valid: bool
    app_hash: bytes
    now_ms: int


@dataclass(frozen=True, slots=True)
class BlockFinalized:
    """Answer to Commit, after the block and the app state are durably stored."""

    height: int
    validator_updates: tuple[ValidatorUpdate, ...]
    now_ms: int


Event = (ProposalReceived | VoteReceived | CommitReceived | TimeoutFired | ProposalBuilt
         | ProposalProcessed | BlockFinalized)

# --- actions ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AppendWAL:
    """Append `entry` (an encoded event) to the WAL of `height`. Must be durable no later
    than the next PersistSigningState completes."""

    height: int
    entry: bytes


@dataclass(frozen=True, slots=True)
class PersistSigningState:
    """fsync this before executing any later action (it precedes the Broadcast it covers)."""

    state: SigningState


@dataclass(frozen=True, slots=True)
class Broadcast:
    message: Proposal | Vote


@dataclass(frozen=True, slots=True)
class ScheduleTimeout:
    height: int
    round: int
    step: TimeoutStep
    duration_ms: int


@dataclass(frozen=True, slots=True)
class BuildProposal:
    """Ask the application for txs + app hash for `template`; answer with ProposalBuilt."""

    height: int
    round: int
    template: Block


@dataclass(frozen=True, slots=True)
class ProcessProposal:
    """Ask the application to validate and execute `block`; answer with ProposalProcessed."""

    height: int
    round: int
    block: Block


@dataclass(frozen=True, slots=True)
class Commit:
    """The block is final: store block + certificate, finalize and commit the application,
    persist the next ChainState, then answer with BlockFinalized."""

    block: Block
    certificate: CommitCertificate


@dataclass(frozen=True, slots=True)
class EvidenceFound:
    evidence: DuplicateVoteEvidence


Action = (AppendWAL | PersistSigningState | Broadcast | ScheduleTimeout | BuildProposal
          | ProcessProposal | Commit | EvidenceFound)

# --- WAL encoding ----------------------------------------------------------------------

_KIND = {ProposalReceived: 1, VoteReceived: 2, CommitReceived: 3, TimeoutFired: 4,
         ProposalBuilt: 5, ProposalProcessed: 6, BlockFinalized: 7}


def encode_event(ev: Event) -> bytes:
    kind = _KIND[type(ev)]
    if isinstance(ev, ProposalReceived):
        p = ev.proposal
        body: list = [p.height, p.round, p.pol_round, p.block_hash, p.timestamp_ms, p.signature,
                      p.block.to_list()]
    elif isinstance(ev, VoteReceived):
        body = ev.vote.to_list()
    elif isinstance(ev, CommitReceived):
        body = [ev.block.to_list(), ev.certificate.to_list()]
    elif isinstance(ev, TimeoutFired):
        body = [ev.height, ev.round, int(ev.step)]
    elif isinstance(ev, ProposalBuilt):
        body = [ev.height, ev.round, list(ev.txs), ev.app_hash]
    elif isinstance(ev, ProposalProcessed):
        body = [ev.height, ev.block_hash, ev.valid, ev.app_hash]
    else:
        body = [ev.height, [[u.pubkey, u.power] for u in ev.validator_updates]]
    return encode_trusted([kind, ev.now_ms, body])


def decode_event(data: bytes) -> Event:
    """Parse a WAL entry. Raises WALError."""
    try:
        kind, now, b = decode(data)
        return _decode_body(kind, now, b)
    except (DecodeError, ConsensusError, ValueError, TypeError, IndexError) as exc:
        raise WALError(f"bad WAL entry: {exc}") from None


def _decode_body(kind: Any, now: int, b: Any) -> Event:
    if kind == 1:
        return ProposalReceived(proposal_from_list(b), now)
    if kind == 2:
        return VoteReceived(Vote.from_list(b), now)
    if kind == 3:
        return CommitReceived(Block.from_list(b[0]), CommitCertificate.from_list(b[1]), now)
    if kind == 4:
        return TimeoutFired(b[0], b[1], TimeoutStep(b[2]), now)
    if kind == 5:
        return ProposalBuilt(b[0], b[1], tuple(b[2]), b[3], now)
    if kind == 6:
        return ProposalProcessed(b[0], b[1], bool(b[2]), b[3], now)
    if kind == 7:
        return BlockFinalized(b[0], tuple(ValidatorUpdate(u[0], u[1]) for u in b[1]), now)
    raise WALError(f"unknown WAL entry kind {kind!r}")
