"""Byzantine validator mode: a validator that misbehaves on purpose, for fault tests only.

`[consensus] byzantine` selects the misbehaviour (default "none"):

- "double_prevote" / "double_precommit": every prevote (precommit) this validator's engine
  signs and broadcasts is followed by a second, conflicting one for the same height, round
  and type: nil when the honest vote was for a block, a made-up block hash when it was nil.
  Honest validators that receive both create DuplicateVoteEvidence, propose it in a block,
  and the commerce VM removes the validator from the set two blocks later.
- "double_propose": when this validator proposes a new block, half of its peers get that
  block and the other half a different one (an empty block when the real one has txs, else
  a block with a shifted time, which honest validators find invalid). Consensus has no
  evidence type for proposals: this mode tests safety and liveness only.

The conflicting messages are signed with the raw validator key, bypassing the SigningGuard
on purpose; the node's own engine never sees them. Any mode but "none" is refused unless
the chain id marks a test chain (ends with "-test" or starts with "test-"), so a production
validator can never be configured into double-signing.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from consensus.block import Block, txs_root
from consensus.messages import (
    Proposal,
    Vote,
    VoteType,
    encode_message,
    proposal_sign_bytes,
    vote_sign_bytes,
)
from core.hashing import sha256
from core.keys import DOMAIN_PROPOSAL, DOMAIN_VOTE
from node.config import ConfigError

if TYPE_CHECKING:
    from node.node import Node

log = logging.getLogger("chainmerce.byzantine")

NONE = "none"
DOUBLE_PREVOTE = "double_prevote"
DOUBLE_PRECOMMIT = "double_precommit"
DOUBLE_PROPOSE = "double_propose"
MODES = (NONE, DOUBLE_PREVOTE, DOUBLE_PRECOMMIT, DOUBLE_PROPOSE)
TEST_CHAIN_SUFFIX = "-test"
TEST_CHAIN_PREFIX = "test-"

_VOTE_MODES = {DOUBLE_PREVOTE: VoteType.PREVOTE, DOUBLE_PRECOMMIT: VoteType.PRECOMMIT}


def is_test_chain(chain_id: str) -> bool:
    return chain_id.endswith(TEST_CHAIN_SUFFIX) or chain_id.startswith(TEST_CHAIN_PREFIX)


def check_mode(mode: str, chain_id: str) -> str:
    """The mode, or ConfigError when it is unknown or not allowed on this chain."""
    if mode not in MODES:
        raise ConfigError(f"[consensus] byzantine: must be one of {', '.join(MODES)}, "
                          f"got {mode!r}")
    if mode != NONE and not is_test_chain(chain_id):
        raise ConfigError(f"[consensus] byzantine = {mode!r} is refused on chain {chain_id!r}: "
                          f"only test chains (id ending in {TEST_CHAIN_SUFFIX!r} or starting "
                          f"with {TEST_CHAIN_PREFIX!r}) may run a byzantine validator")
    return mode


def conflicting_vote(vote: Vote, key, chain_id: str) -> Vote:
    """A validly signed vote of the same validator, height, round and type for another
    value: nil for a block vote, a made-up block hash for a nil vote."""
    other = None if vote.block_hash is not None else sha256(b"chainmerce/byzantine" +
                                                             vote.sign_bytes)
    sign_bytes = vote_sign_bytes(vote.type, vote.height, vote.round, other, vote.timestamp_ms,
                                 vote.validator_index)
    return Vote(vote.type, vote.height, vote.round, other, vote.timestamp_ms,
                vote.validator_index, key.sign(DOMAIN_VOTE, chain_id, sign_bytes), sign_bytes)


class Byzantine:
    """Wraps the driver's broadcast hook of one node (see the module docstring)."""

    def __init__(self, node: Node, mode: str):
        self.node = node
        self.mode = mode
        self.key = node.validator_key
        self.sent_conflicts: set[tuple[int, int, int]] = set()
        self.split_proposals: set[tuple[int, int]] = set()
        self.equivocations = 0
        log.warning("BYZANTINE MODE %s: this validator misbehaves on purpose (test chain %s)",
                    mode, node.chain_id)

    def broadcast(self, message: object) -> None:
        if isinstance(message, Proposal) and self.mode == DOUBLE_PROPOSE and \
                self._split_proposal(message):
            return
        self.node.net.broadcast_consensus(message)
        if isinstance(message, Vote) and _VOTE_MODES.get(self.mode) == message.type:
            self._equivocate(message)

    def _equivocate(self, vote: Vote) -> None:
        engine = self.node.engine
        slot = (vote.height, vote.round, int(vote.type))
        # Only our own fresh votes: the gossip timer re-sends them and others' polka votes.
        if vote.validator_index != engine.my_index or slot in self.sent_conflicts:
            return
        self.sent_conflicts.add(slot)
        if len(self.sent_conflicts) > 10_000:
            self.sent_conflicts.clear()
        other = conflicting_vote(vote, self.key, self.node.chain_id)
        self.equivocations += 1
        log.warning("byzantine: sent a conflicting %s at height %d round %d",
                    vote.type.name.lower(), vote.height, vote.round)
        self.node.net.broadcast_consensus(other)

    def _split_proposal(self, proposal: Proposal) -> bool:
        """Send `proposal` to half of the peers and a different block to the rest; False
        (send normally) for re-sent proposals and when there are fewer than two peers."""
        network = self.node.network
        slot = (proposal.height, proposal.round)
        peers = sorted(p.peer_id for p in network.peers()) if network is not None else []
        if proposal.block is None or len(peers) < 2:
            return False
        if slot in self.split_proposals:
            return True  # never re-send either block: each half keeps what it got
        self.split_proposals.add(slot)
        other = self._other_proposal(proposal)
        from node.network import CONSENSUS

        first, second = encode_message(proposal), encode_message(other)
        self.node.net.seen.add(sha256(first))
        self.node.net.seen.add(sha256(second))
        for i, peer_id in enumerate(peers):
            network.send(peer_id, CONSENSUS, first if i % 2 == 0 else second)
        self.equivocations += 1
        log.warning("byzantine: proposed two blocks at height %d round %d",
                    proposal.height, proposal.round)
        return True

    def _other_proposal(self, proposal: Proposal) -> Proposal:
        block: Block = proposal.block
        if block.txs:
            engine, app = self.node.engine, self.node.app
            empty = Block(replace(block.header, txs_root=txs_root(()), hash=b""), (),
                          block.evidence, block.last_commit)
            prepared = app.prepare_proposal(empty, [], engine.chain.validators.at)
            header = replace(empty.header, app_hash=prepared.app_hash, hash=b"")
        else:
            header = replace(block.header, time_ms=block.header.time_ms + 1, hash=b"")
        other = Block(header, () if block.txs else block.txs, block.evidence, block.last_commit)
        sign_bytes = proposal_sign_bytes(proposal.height, proposal.round, proposal.pol_round,
                                         other.hash, proposal.timestamp_ms)
        signature = self.key.sign(DOMAIN_PROPOSAL, self.node.chain_id, sign_bytes)
        return Proposal(proposal.height, proposal.round, proposal.pol_round, other.hash,
                        proposal.timestamp_ms, signature, other)
