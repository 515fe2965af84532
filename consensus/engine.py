"""The Tendermint consensus algorithm as a sans-IO state machine (one object per validator).

`handle(event)` applies one input and returns the actions the driver must execute, in
order. The rules are those of Algorithm 1 in "The latest gossip on BFT consensus"
(Buchman, Kwon, Milosevic): propose -> prevote -> precommit with lockedValue/lockedRound and
validValue/validRound, +2/3 prevotes (a polka) lock, +2/3 precommits for a block at any
round decide, f+1 messages of a higher round make the validator skip to it, and timeouts
grow linearly with the round. Validity of a value means: the header follows our chain
(validate_block) AND the application executed it to the app_hash the header claims.

No clock, no randomness, no I/O: time arrives in events, signing goes through the
SigningGuard, persistence and networking are actions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import IntEnum

from consensus.block import (
    ZERO_HASH,
    Block,
    Header,
    bft_time,
    evidence_root,
    last_commit_hash,
    txs_root,
)
from consensus.chain import BlockLimits, ChainState, body_matches_header, validate_block
from consensus.errors import BlockError, SigningRefused
from consensus.events import (
    Action,
    AppendWAL,
    BlockFinalized,
    Broadcast,
    BuildProposal,
    Commit,
    CommitReceived,
    Event,
    EvidenceFound,
    PersistSigningState,
    ProcessProposal,
    ProposalBuilt,
    ProposalProcessed,
    ProposalReceived,
    ScheduleTimeout,
    TimeoutFired,
    TimeoutStep,
    VoteReceived,
    encode_event,
)
from consensus.messages import (
    CommitCertificate,
    CommitSig,
    DuplicateVoteEvidence,
    Proposal,
    Step,
    Vote,
    VoteType,
    make_commit,
    make_evidence,
    proposal_sign_bytes,
    verify_commit,
    verify_vote,
    vote_sign_bytes,
)
from consensus.sigcache import DEFAULT_CACHE, SignatureCache
from consensus.signing import SigningGuard
from consensus.votes import ADDED, CONFLICT, CONFLICT_COUNTED, HeightVotes
from core.address import address_from_pubkey
from core.encoding import decode
from core.keys import DOMAIN_PROPOSAL, signing_payload


class Phase(IntEnum):
    NEW_HEIGHT = 0  # waiting for the commit timeout before round 0
    PROPOSE = 1
    PREVOTE = 2
    PRECOMMIT = 3
    COMMIT = 4  # decided, waiting for BlockFinalized


@dataclass(frozen=True, slots=True)
class EngineConfig:
    timeout_propose_ms: int = 3000
    timeout_propose_delta_ms: int = 500
    timeout_prevote_ms: int = 1000
    timeout_prevote_delta_ms: int = 500
    timeout_precommit_ms: int = 1000
    timeout_precommit_delta_ms: int = 500
    timeout_commit_ms: int = 0
    gossip_interval_ms: int = 2000  # 0 disables re-broadcasting our own messages
    max_round_ahead: int = 1000  # ignore messages for rounds further ahead than this
    future_messages_per_validator: int = 32  # buffer for height + 1
    max_pending_evidence: int = 256
    limits: BlockLimits = field(default_factory=BlockLimits)

    def timeout(self, step: TimeoutStep, round_: int) -> int:
        if step == TimeoutStep.PROPOSE:
            return self.timeout_propose_ms + round_ * self.timeout_propose_delta_ms
        if step == TimeoutStep.PREVOTE:
            return self.timeout_prevote_ms + round_ * self.timeout_prevote_delta_ms
        if step == TimeoutStep.PRECOMMIT:
            return self.timeout_precommit_ms + round_ * self.timeout_precommit_delta_ms
        if step == TimeoutStep.COMMIT:
            return self.timeout_commit_ms
        return self.gossip_interval_ms


class ConsensusEngine:
    """One validator's (or observer's, when `signer` is None) view of consensus."""

    def __init__(self, chain: ChainState, config: EngineConfig | None = None,
                 signer: SigningGuard | None = None, cache: SignatureCache = DEFAULT_CACHE):
        self.chain = chain
        self.config = config or EngineConfig()
        self.signer = signer
        self.cache = cache
        self.replaying = False
        self.started = False
        self.pending_evidence: dict[bytes, DuplicateVoteEvidence] = {}
        self._actions: list[Action] = []
        self._future: dict[int, list[Event]] = {}
        self._enter_height(chain.next_height)

    # --- public API --------------------------------------------------------------------

    def start(self, now_ms: int) -> list[Action]:
        """Begin (or, after a restart, resume) the current height. Call once."""
        self._actions = []
        if not self.started:
            self.started = True
            if self.config.gossip_interval_ms > 0:
                self._schedule(TimeoutStep.GOSSIP, 0)
            self._start_round(0, now_ms)
            self._run_rules(now_ms)
        return self._take()

    def handle(self, event: Event) -> list[Action]:
        self._actions = []
        self._dispatch(event)
        return self._take()

    def replay(self, events: Iterable[Event]) -> list[Action]:
        """Feed WAL entries of the current height after start(). Nothing is re-logged but
        our own messages signed anew (see `_log`); signatures already made are reused,
        conflicting ones refused by the guard."""
        out: list[Action] = []
        self.replaying = True
        try:
            for ev in events:
                out.extend(self.handle(ev))
        finally:
            self.replaying = False
        return out

    @property
    def status(self) -> tuple[int, int, Phase]:
        return (self.height, self.round, self.phase)

    # --- height / round state ------------------------------------------------------------

    def _enter_height(self, height: int) -> None:
        self.height = height
        self.validators = self.chain.validators.at(height)
        self.my_index = (None if self.signer is None
                         else self.validators.index_of(self.signer.public_key))
        self.round = 0
        self.phase = Phase.NEW_HEIGHT
        self.locked_round = -1
        self.locked_block: Block | None = None
        self.valid_round = -1
        self.valid_block: Block | None = None
        self.proposals: dict[int, Proposal] = {}
        self.blocks: dict[bytes, Block] = {}
        self.validity: dict[bytes, bool] = {}
        self.processing: set[bytes] = set()
        self.votes = HeightVotes(self.validators)
        self.decided: tuple[Block, CommitCertificate] | None = None
        self._prevote_timeout_rounds: set[int] = set()
        self._precommit_timeout_rounds: set[int] = set()
        self._polka_rounds: set[int] = set()
        self._commit_candidates: dict[int, bytes] = {}  # round -> block with +2/3 precommits
        self._certificates: dict[bytes, CommitCertificate] = {}  # received, verified proofs
        self._skip_round = -1  # highest round seen with f+1 power of votes
        self._template: Block | None = None
        self._build_round = -1
        self._own: list[Proposal | Vote] = []

    def _start_round(self, round_: int, now_ms: int) -> None:
        self.round = round_
        self.phase = Phase.PROPOSE
        self._build_round = -1
        if self.my_index is not None and self.validators.proposer_index(
                self.height, round_) == self.my_index and round_ not in self.proposals:
            if self.valid_block is not None:
                self._send_proposal(self.valid_block, self.valid_round, now_ms)
            else:
                self._template = self._make_template()
                self._build_round = round_
                self._emit(BuildProposal(self.height, round_, self._template))
        self._schedule(TimeoutStep.PROPOSE, round_)

    # --- dispatch ------------------------------------------------------------------------

    def _dispatch(self, ev: Event) -> None:
        if isinstance(ev, VoteReceived):
            self._on_vote(ev)
        elif isinstance(ev, ProposalReceived):
            self._on_proposal(ev)
        elif isinstance(ev, TimeoutFired):
            self._on_timeout(ev)
        elif isinstance(ev, ProposalProcessed):
            self._on_processed(ev)
        elif isinstance(ev, ProposalBuilt):
            self._on_built(ev)
        elif isinstance(ev, CommitReceived):
            self._on_commit_received(ev)
        elif isinstance(ev, BlockFinalized):
            self._on_finalized(ev)

    def _log(self, ev: Event, *, signed_anew: bool = False) -> None:
        """Log `ev` unless it is being replayed from the WAL. Our own signed messages go
        to the WAL too: after a restart the guard refuses to sign an earlier step again,
        and replaying the logged message restores it. So one a replay signs anew
        (`signed_anew`) is logged even then: the WAL does not hold it (else the guard would
        have returned its stored signature), and a second crash would leave a signing
        state past it with nothing to restore it from (a lone validator then could not
        vote at that height again and stalled for good)."""
        if not self.replaying or signed_anew:
            self._emit(AppendWAL(self.height, encode_event(ev)))

    def _buffer_future(self, sender: int, ev: Event) -> None:
        queue = self._future.setdefault(sender, [])
        if len(queue) < self.config.future_messages_per_validator:
            queue.append(ev)

    def _round_acceptable(self, round_: int) -> bool:
        return round_ <= self.round + self.config.max_round_ahead

    # --- votes ---------------------------------------------------------------------------

    def _on_vote(self, ev: VoteReceived) -> None:
        vote = ev.vote
        if vote.height == self.height - 1:
            self._extend_last_commit(vote)
            return
        if vote.height == self.height + 1:
            nxt = self.chain.validators.at(vote.height)
            if verify_vote(vote, nxt, self.chain.chain_id, self.cache):
                self._buffer_future(vote.validator_index, ev)
            return
        if (vote.height != self.height or self.phase == Phase.COMMIT
                or not self._round_acceptable(vote.round)):
            return
        if not verify_vote(vote, self.validators, self.chain.chain_id, self.cache):
            return
        if self.votes.has_vote(vote):
            return  # exact duplicate: nothing to log
        self._log(ev)
        if vote.validator_index == self.my_index and vote not in self._own:
            self._own.append(vote)  # replayed from the WAL after a restart
        self._add_vote(vote)
        self._run_rules(ev.now_ms)

    def _add_vote(self, vote: Vote) -> None:
        known = vote.block_hash is None or vote.block_hash in self.blocks
        result, existing = self.votes.add(vote, count_conflict=known)
        if result in (CONFLICT, CONFLICT_COUNTED) and existing is not None:
            self._record_evidence(make_evidence(existing, vote))
        if result not in (ADDED, CONFLICT_COUNTED):
            return
        if vote.type == VoteType.PRECOMMIT and vote.block_hash is not None and \
                self.votes.has_quorum_for(vote.round, VoteType.PRECOMMIT, vote.block_hash):
            self._commit_candidates[vote.round] = vote.block_hash
        if vote.round > self._skip_round and self.validators.has_one_third(
                self.votes.round_power(vote.round)):
            self._skip_round = vote.round

    def _record_evidence(self, ev: DuplicateVoteEvidence) -> None:
        key = ev.hash()
        if key in self.pending_evidence:
            return
        if len(self.pending_evidence) < self.config.max_pending_evidence:
            self.pending_evidence[key] = ev
        self._emit(EvidenceFound(ev))

    def _extend_last_commit(self, vote: Vote) -> None:
        """Late precommits for the last block enrich the commit our next proposal carries."""
        lc = self.chain.last_commit
        if (lc is None or vote.type != VoteType.PRECOMMIT or vote.round != lc.round
                or vote.block_hash != lc.block_hash or self._template is not None
                or any(s.validator_index == vote.validator_index for s in lc.signatures)):
            return
        if not verify_vote(vote, self.chain.validators.at(vote.height), self.chain.chain_id,
                           self.cache):
            return
        sigs = sorted(lc.signatures + (CommitSig(vote.validator_index, vote.timestamp_ms,
                                                 vote.signature),),
                      key=lambda s: s.validator_index)
        self.chain = replace(self.chain, last_commit=replace(lc, signatures=tuple(sigs)))

    # --- proposals -----------------------------------------------------------------------

    def _on_proposal(self, ev: ProposalReceived) -> None:
        p = ev.proposal
        if p.block is None or p.block.hash != p.block_hash or not -1 <= p.pol_round < p.round:
            return
        if p.height == self.height + 1:
            nxt = self.chain.validators.at(p.height)
            if self._proposal_signed(p, nxt):
                self._buffer_future(nxt.proposer_index(p.height, p.round), ev)
            return
        if (p.height != self.height or self.phase == Phase.COMMIT or p.round in self.proposals
                or not self._round_acceptable(p.round)):
            return
        if not self._proposal_signed(p, self.validators) or not body_matches_header(p.block):
            return  # forged, or a relay corrupted the body: not the proposer's block
        self._log(ev)
        self.proposals[p.round] = p
        if self.my_index is not None and self.validators.proposer_index(
                p.height, p.round) == self.my_index:
            self._own.append(p)  # our own proposal, replayed from the WAL after a restart
            if p.block.hash not in self.blocks:
                self.blocks[p.block.hash] = p.block
                self.validity[p.block.hash] = True  # we executed it before signing it
        self._learn_block(p.block)
        self._run_rules(ev.now_ms)

    def _proposal_signed(self, p: Proposal, validators) -> bool:
        proposer = validators.proposer(p.height, p.round)
        return self.cache.verify(proposer.pubkey,
                                 signing_payload(DOMAIN_PROPOSAL, self.chain.chain_id,
                                                 p.sign_bytes), p.signature)

    def _learn_block(self, block: Block) -> None:
        h = block.hash
        if h in self.blocks:
            return
        self.blocks[h] = block
        try:
            # callers checked body_matches_header before learning the block
            validate_block(block, self.chain, self.config.limits, self.cache, body_checked=True)
        except BlockError:
            self.validity[h] = False
            return
        self.processing.add(h)
        self._emit(ProcessProposal(self.height, self.round, block))

    def _on_processed(self, ev: ProposalProcessed) -> None:
        if ev.height != self.height or ev.block_hash not in self.processing:
            return
        self._log(ev)
        self.processing.discard(ev.block_hash)
        block = self.blocks[ev.block_hash]
        self.validity[ev.block_hash] = ev.valid and ev.app_hash == block.header.app_hash
        self._run_rules(ev.now_ms)

    def _make_template(self) -> Block:
        chain = self.chain
        h = self.height
        lc = chain.last_commit if h > chain.initial_height else None
        time_ms = bft_time(lc, chain.validators.at(h - 1) if lc else None,
                           chain.last_block_time_ms, chain.genesis_time_ms)
        limits = self.config.limits
        evidence = tuple(sorted(
            (e for e in self.pending_evidence.values()
             if h - limits.evidence_max_age <= e.height <= h),
            key=lambda e: (e.height, e.hash()))[: limits.max_evidence])
        assert self.signer is not None
        header = Header(chain.chain_id, h, time_ms, chain.last_block_hash, last_commit_hash(lc),
                        txs_root(()), ZERO_HASH, self.validators.hash,
                        chain.validators.at(h + 1).hash, evidence_root(evidence),
                        address_from_pubkey(self.signer.public_key))
        return Block(header, (), evidence, lc)

    def _on_built(self, ev: ProposalBuilt) -> None:
        if (ev.height != self.height or ev.round != self.round or self.phase != Phase.PROPOSE
                or self._build_round != ev.round or ev.round in self.proposals
                or self._template is None):
            return
        self._log(ev)
        t = self._template
        txs = tuple(ev.txs)
        header = replace(t.header, txs_root=txs_root(txs), app_hash=ev.app_hash, hash=b"")
        block = Block(header, txs, t.evidence, t.last_commit)
        self._send_proposal(block, -1, ev.now_ms)
        self._run_rules(ev.now_ms)

    def _send_proposal(self, block: Block, pol_round: int, now_ms: int) -> None:
        assert self.signer is not None
        sign_bytes = proposal_sign_bytes(self.height, self.round, pol_round, block.hash, now_ms)
        try:
            used, signature, new_state = self.signer.sign(self.height, self.round, Step.PROPOSE,
                                                          sign_bytes)
        except SigningRefused:
            return
        timestamp = now_ms if used == sign_bytes else decode(used)[4]
        p = Proposal(self.height, self.round, pol_round, block.hash, timestamp, signature, block)
        self._log(ProposalReceived(p, now_ms), signed_anew=new_state is not None)
        if new_state is not None:
            self._emit(PersistSigningState(new_state))
        self._emit(Broadcast(p))
        self._own.append(p)
        self.proposals[self.round] = p
        if block.hash not in self.blocks:
            self.blocks[block.hash] = block
            self.validity[block.hash] = True  # we executed it while building it

    # --- voting --------------------------------------------------------------------------

    def _cast(self, vtype: VoteType, block_hash: bytes | None, now_ms: int) -> None:
        """Sign and send our vote. The phase moves on even if the guard refuses."""
        if self.signer is None or self.my_index is None:
            return
        timestamp = max(now_ms, self.chain.last_block_time_ms + 1)
        sign_bytes = vote_sign_bytes(vtype, self.height, self.round, block_hash, timestamp,
                                     self.my_index)
        step = Step.PREVOTE if vtype == VoteType.PREVOTE else Step.PRECOMMIT
        try:
            used, signature, new_state = self.signer.sign(self.height, self.round, step,
                                                          sign_bytes)
        except SigningRefused:
            return
        if used != sign_bytes:
            timestamp = decode(used)[4]
        vote = Vote(vtype, self.height, self.round, block_hash, timestamp, self.my_index,
                    signature, used)
        self.cache.remember(self.signer.public_key, vote.payload(self.chain.chain_id), signature)
        self._log(VoteReceived(vote, now_ms), signed_anew=new_state is not None)
        if new_state is not None:
            self._emit(PersistSigningState(new_state))
        self._emit(Broadcast(vote))
        self._own.append(vote)
        self._add_vote(vote)

    def _prevote(self, block_hash: bytes | None, now_ms: int) -> None:
        self._cast(VoteType.PREVOTE, block_hash, now_ms)
        self.phase = Phase.PREVOTE

    def _precommit(self, block_hash: bytes | None, now_ms: int) -> None:
        self._cast(VoteType.PRECOMMIT, block_hash, now_ms)
        self.phase = Phase.PRECOMMIT

    # --- the upon-rules of Algorithm 1 ----------------------------------------------------

    def _run_rules(self, now_ms: int) -> None:
        if self.phase == Phase.NEW_HEIGHT:
            # +2/3 precommits (or a certificate) decide in any step: a node catching up
            # must not wait out timeout_commit for every block it is handed
            self._try_decide()
            return
        while self.phase not in (Phase.COMMIT, Phase.NEW_HEIGHT) and self._apply_one_rule(now_ms):
            pass

    def _apply_one_rule(self, now_ms: int) -> bool:
        """Apply the first rule whose condition holds; True when the state changed."""
        r = self.round
        if self._try_decide():
            return True
        p = self.proposals.get(r)
        if self.phase == Phase.PROPOSE and p is not None and self._rule_prevote_proposal(p, now_ms):
            return True
        if (self.phase == Phase.PREVOTE and r not in self._prevote_timeout_rounds
                and self.votes.has_quorum_any(r, VoteType.PREVOTE)):
            self._prevote_timeout_rounds.add(r)
            self._schedule(TimeoutStep.PREVOTE, r)
        if (self.phase >= Phase.PREVOTE and p is not None and r not in self._polka_rounds
                and self.validity.get(p.block_hash) is True
                and self.votes.has_quorum_for(r, VoteType.PREVOTE, p.block_hash)):
            self._polka_rounds.add(r)
            block = self.blocks[p.block_hash]
            if self.phase == Phase.PREVOTE:
                self.locked_block, self.locked_round = block, r
                self._precommit(block.hash, now_ms)
            self.valid_block, self.valid_round = block, r
            return True
        if self.phase == Phase.PREVOTE and self.votes.has_quorum_for(r, VoteType.PREVOTE, None):
            self._precommit(None, now_ms)
            return True
        if (r not in self._precommit_timeout_rounds
                and self.votes.has_quorum_any(r, VoteType.PRECOMMIT)):
            self._precommit_timeout_rounds.add(r)
            self._schedule(TimeoutStep.PRECOMMIT, r)
        if self._skip_round > r:
            self._start_round(self._skip_round, now_ms)
            return True
        return False

    def _rule_prevote_proposal(self, p: Proposal, now_ms: int) -> bool:
        valid = self.validity.get(p.block_hash)
        if valid is None:
            return False  # the application has not answered yet
        locked_hash = self.locked_block.hash if self.locked_block is not None else None
        if p.pol_round == -1:
            ok = valid and (self.locked_round == -1 or locked_hash == p.block_hash)
        elif self.votes.has_quorum_for(p.pol_round, VoteType.PREVOTE, p.block_hash):
            ok = valid and (self.locked_round <= p.pol_round or locked_hash == p.block_hash)
        else:
            return False
        self._prevote(p.block_hash if ok else None, now_ms)
        return True

    def _try_decide(self) -> bool:
        for round_, block_hash in sorted(self._commit_candidates.items()):
            if self.validity.get(block_hash) is not True:
                continue
            block = self.blocks[block_hash]
            vs = self.votes.get(round_, VoteType.PRECOMMIT)
            assert vs is not None
            cert = make_commit(vs.votes_for(block_hash))
            self._decide(block, cert)
            return True
        for block_hash, cert in self._certificates.items():
            if self.validity.get(block_hash) is True:
                self._decide(self.blocks[block_hash], cert)
                return True
        return False

    def _decide(self, block: Block, cert: CommitCertificate) -> None:
        self.decided = (block, cert)
        self.phase = Phase.COMMIT
        self._emit(Commit(block, cert))

    # --- timeouts, catch-up, finalization -------------------------------------------------

    def _schedule(self, step: TimeoutStep, round_: int) -> None:
        self._emit(ScheduleTimeout(self.height, round_, step, self.config.timeout(step, round_)))

    def _on_timeout(self, ev: TimeoutFired) -> None:
        if ev.step == TimeoutStep.GOSSIP:
            self._gossip()
            return
        if ev.height != self.height:
            return
        r = ev.round
        if ev.step == TimeoutStep.COMMIT:
            if self.phase != Phase.NEW_HEIGHT:
                return
            self._log(ev)
            self._start_round(0, ev.now_ms)
        elif ev.step == TimeoutStep.PROPOSE:
            if r != self.round or self.phase != Phase.PROPOSE:
                return
            self._log(ev)
            self._prevote(None, ev.now_ms)
        elif ev.step == TimeoutStep.PREVOTE:
            if r != self.round or self.phase != Phase.PREVOTE:
                return
            self._log(ev)
            self._precommit(None, ev.now_ms)
        elif ev.step == TimeoutStep.PRECOMMIT:
            if r != self.round or self.phase in (Phase.COMMIT, Phase.NEW_HEIGHT):
                return
            self._log(ev)
            self._start_round(r + 1, ev.now_ms)
        self._run_rules(ev.now_ms)

    def _gossip(self) -> None:
        """Re-send our own messages of the latest rounds: the network may have lost them."""
        if self.phase != Phase.COMMIT:
            for msg in self._own:
                if msg.round >= self.round - 1:
                    self._emit(Broadcast(msg))
            # Relay the polka behind our validValue: peers that missed some of its prevotes
            # (or saw an equivocator's other vote first) need it to accept a re-proposal.
            if self.valid_block is not None:
                vs = self.votes.get(self.valid_round, VoteType.PREVOTE)
                if vs is not None:
                    for vote in vs.votes_for(self.valid_block.hash):
                        if vote.validator_index != self.my_index:
                            self._emit(Broadcast(vote))
        self._emit(ScheduleTimeout(self.height, self.round, TimeoutStep.GOSSIP,
                                   self.config.gossip_interval_ms))

    def _on_commit_received(self, ev: CommitReceived) -> None:
        block, cert = ev.block, ev.certificate
        if (block.height != self.height or self.phase == Phase.COMMIT
                or cert.block_hash != block.hash or not self._round_acceptable(cert.round)):
            return
        if not body_matches_header(block):
            return
        try:
            verify_commit(cert, self.validators, self.chain.chain_id, height=self.height,
                          cache=self.cache)
        except Exception:  # noqa: BLE001 - any failure means "not a proof", drop it
            return
        self._log(ev)
        # The certificate itself proves the decision, even when some of its precommits
        # conflict with votes we already counted (an equivocator's other vote).
        self._certificates.setdefault(block.hash, cert)
        for vote in cert.votes():
            self._add_vote(vote)
        self._learn_block(block)
        self._run_rules(ev.now_ms)

    def _on_finalized(self, ev: BlockFinalized) -> None:
        if ev.height != self.height or self.phase != Phase.COMMIT or self.decided is None:
            return
        self._log(ev)
        block, cert = self.decided
        self.chain = self.chain.advance(block, cert, ev.validator_updates)
        for e in block.evidence:
            self.pending_evidence.pop(e.hash(), None)
        oldest = block.height + 1 - self.config.limits.evidence_max_age
        for key in [k for k, e in self.pending_evidence.items() if e.height < oldest]:
            del self.pending_evidence[key]
        self._enter_height(block.height + 1)
        if self.config.timeout_commit_ms > 0:
            self._schedule(TimeoutStep.COMMIT, 0)
        else:
            self._start_round(0, ev.now_ms)
            self._run_rules(ev.now_ms)
        buffered = self._future
        self._future = {}
        for sender in sorted(buffered):
            for fev in buffered[sender]:
                self._dispatch(replace(fev, now_ms=ev.now_ms))

    # --- helpers -------------------------------------------------------------------------

    def _emit(self, action: Action) -> None:
        self._actions.append(action)

    def _take(self) -> list[Action]:
        out, self._actions = self._actions, []
        return out
