"""A synchronous driver for unit tests: one engine, a KV app, and signed-message helpers."""

from __future__ import annotations

from collections import deque
from dataclasses import replace
from typing import Any

from consensus.block import Block, txs_root
from consensus.chain import ChainState
from consensus.engine import ConsensusEngine, EngineConfig
from consensus.events import (
    AppendWAL,
    BlockFinalized,
    Broadcast,
    BuildProposal,
    Commit,
    EvidenceFound,
    PersistSigningState,
    ProcessProposal,
    ProposalBuilt,
    ProposalProcessed,
    ScheduleTimeout,
)
from consensus.kvapp import KVApp
from consensus.messages import (
    Proposal,
    Vote,
    VoteType,
    proposal_sign_bytes,
    vote_sign_bytes,
)
from consensus.signing import SigningGuard, SigningState
from consensus.validators import Validator, ValidatorSet
from core.hashing import sha256
from core.keys import DOMAIN_PROPOSAL, DOMAIN_VOTE, PrivateKey

CHAIN_ID = "unit-chain"
GENESIS_MS = 1_000_000
CONFIG = EngineConfig(gossip_interval_ms=0)


class Validators:
    """n validator keys, their set, genesis, and signing helpers for any of them."""

    def __init__(self, n: int = 4, powers: list[int] | None = None):
        keys = [PrivateKey(sha256(b"unit-validator-%d" % i)) for i in range(n)]
        powers = powers or [1] * n
        self.set = ValidatorSet(Validator(k.public_key, p) for k, p in zip(keys, powers, strict=True))
        self.keys = {self.set.index_of(k.public_key): k for k in keys}  # by validator index
        self.genesis = ChainState.genesis(CHAIN_ID, self.set, GENESIS_MS)

    def proposer(self, height: int, round_: int, chain: ChainState | None = None) -> int:
        chain = chain or self.genesis
        return chain.validators.at(height).proposer_index(height, round_)

    def vote(self, index: int, vtype: VoteType, height: int, round_: int,
             block_hash: bytes | None, timestamp: int = GENESIS_MS + 1) -> Vote:
        sb = vote_sign_bytes(vtype, height, round_, block_hash, timestamp, index)
        return Vote(vtype, height, round_, block_hash, timestamp, index,
                    self.keys[index].sign(DOMAIN_VOTE, CHAIN_ID, sb), sb)

    def proposal(self, block: Block, round_: int, pol_round: int = -1,
                 signer: int | None = None, chain: ChainState | None = None) -> Proposal:
        h = block.height
        index = self.proposer(h, round_, chain) if signer is None else signer
        sb = proposal_sign_bytes(h, round_, pol_round, block.hash, GENESIS_MS)
        return Proposal(h, round_, pol_round, block.hash, GENESIS_MS,
                        self.keys[index].sign(DOMAIN_PROPOSAL, CHAIN_ID, sb), block)

    def engine(self, index: int | None, chain: ChainState | None = None,
               signing: SigningState | None = None, config: EngineConfig = CONFIG
               ) -> ConsensusEngine:
        guard = None if index is None else SigningGuard(self.keys[index], CHAIN_ID, signing)
        return ConsensusEngine(chain or self.genesis, config, guard)


class Driver:
    """Executes an engine's actions synchronously; app requests are answered after the
    current action list, like a real driver would."""

    def __init__(self, engine: ConsensusEngine, app: KVApp | None = None,
                 txs: list[bytes] | None = None, auto_finalize: bool = True):
        self.engine = engine
        self.app = app or KVApp()
        self.txs = txs if txs is not None else [b"set:a=1"]
        self.auto_finalize = auto_finalize
        self.now = GENESIS_MS + 10
        self.actions: list[Any] = []
        self.sent: list[Proposal | Vote] = []
        self.timeouts: list[ScheduleTimeout] = []
        self.commits: list[Commit] = []
        self.evidence: list[Any] = []
        self.wal: list[tuple[int, bytes]] = []
        self.signing: SigningState | None = None
        self._pending: deque = deque()

    def start(self) -> list[Any]:
        return self._run(self.engine.start(self.now))

    def feed(self, event: Any) -> list[Any]:
        return self._run(self.engine.handle(event))

    def _run(self, actions: list[Any]) -> list[Any]:
        out = list(actions)
        self._execute(actions)
        while self._pending:
            more = self.engine.handle(self._pending.popleft())
            out.extend(more)
            self._execute(more)
        return out

    def _execute(self, actions: list[Any]) -> None:
        self.actions.extend(actions)
        for a in actions:
            if isinstance(a, Broadcast):
                self.sent.append(a.message)
            elif isinstance(a, ScheduleTimeout):
                self.timeouts.append(a)
            elif isinstance(a, AppendWAL):
                self.wal.append((a.height, a.entry))
            elif isinstance(a, PersistSigningState):
                self.signing = a.state
            elif isinstance(a, EvidenceFound):
                self.evidence.append(a.evidence)
            elif isinstance(a, BuildProposal):
                p = self.app.prepare_proposal(a.template, self.txs)
                self._pending.append(ProposalBuilt(a.height, a.round, p.txs, p.app_hash, self.now))
            elif isinstance(a, ProcessProposal):
                r = self.app.process_proposal(a.block)
                self._pending.append(ProposalProcessed(a.height, a.block.hash, r.valid,
                                                       r.app_hash, self.now))
            elif isinstance(a, Commit):
                self.commits.append(a)
                if self.auto_finalize:
                    fin = self.app.finalize_block(a.block)
                    self._pending.append(BlockFinalized(a.block.height, fin.validator_updates,
                                                        self.now))

    def votes_sent(self, vtype: VoteType) -> list[Vote]:
        return [m for m in self.sent if isinstance(m, Vote) and m.type == vtype]

    def proposals_sent(self) -> list[Proposal]:
        return [m for m in self.sent if isinstance(m, Proposal)]


def build_block(vals: Validators, round_: int = 0, txs: list[bytes] | None = None,
                chain: ChainState | None = None, app: KVApp | None = None) -> Block:
    """A valid block for the next height of `chain`, as its (height, round) proposer builds it."""
    chain = chain or vals.genesis
    height = chain.next_height
    engine = vals.engine(chain.validators.at(height).proposer_index(height, round_), chain)
    template = engine._make_template()  # noqa: SLF001 - the engine's own block template
    prepared = (app or KVApp()).prepare_proposal(template, txs or [b"set:x=%d" % round_])
    header = replace(template.header, txs_root=txs_root(prepared.txs),
                     app_hash=prepared.app_hash, hash=b"")
    return Block(header, prepared.txs, template.evidence, template.last_commit)
