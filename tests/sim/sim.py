"""The deterministic simulator: N engines, virtual time, a seeded hostile network.

Everything random comes from one `random.Random(seed)`, events are ordered by
(virtual time, sequence number), and nothing reads the wall clock, so a seed replays
exactly. Crash-restarts keep only what the engine asked to persist (signing state, WAL,
committed blocks with their chain state and app snapshot).
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field, replace
from typing import Any

from consensus.block import Block, txs_root
from consensus.chain import ChainState
from consensus.engine import ConsensusEngine, EngineConfig
from consensus.errors import ConsensusError
from consensus.events import (
    AppendWAL,
    BlockFinalized,
    Broadcast,
    BuildProposal,
    Commit,
    CommitReceived,
    EvidenceFound,
    PersistSigningState,
    ProcessProposal,
    ProposalBuilt,
    ProposalProcessed,
    ProposalReceived,
    ScheduleTimeout,
    TimeoutFired,
    VoteReceived,
    decode_event,
)
from consensus.kvapp import KVApp
from consensus.messages import (
    CommitMessage,
    Proposal,
    Vote,
    VoteType,
    decode_message,
    encode_message,
    proposal_sign_bytes,
    verify_commit,
    vote_sign_bytes,
)
from consensus.signing import SigningGuard, SigningState
from consensus.validators import Validator, ValidatorSet
from core.hashing import sha256
from core.keys import DOMAIN_PROPOSAL, DOMAIN_VOTE, PrivateKey

from .scenarios import SCENARIOS, Scenario, faults

CHAIN_ID = "sim-chain"
GENESIS_TIME_MS = 1_700_000_000_000
ENGINE_CONFIG = EngineConfig(
    timeout_propose_ms=800, timeout_propose_delta_ms=200,
    timeout_prevote_ms=400, timeout_prevote_delta_ms=200,
    timeout_precommit_ms=400, timeout_precommit_delta_ms=200,
    gossip_interval_ms=1000,
)
APP_LATENCY_MS = 2
CATCHUP_INTERVAL_MS = 300

# event kinds in the queue
DELIVER, TIMER, APP, CRASH, RESTART, INJECT, STABLE, PARTITION, HEAL = range(9)


def replay_command(seed: int, sc: Scenario) -> str:
    cmd = f"python -m tests.sim --seed {seed} --scenario {sc.name} --validators {sc.validators}"
    if sc.name in SCENARIOS and sc.byzantine != SCENARIOS[sc.name].byzantine:
        cmd += f" --byzantine {sc.byzantine}"
    return cmd


@dataclass
class Disk:
    """What survives a crash."""

    signing: bytes | None = None
    wal: list[tuple[int, bytes]] = field(default_factory=list)
    chain: bytes | None = None
    app: bytes | None = None
    blocks: dict[int, tuple[Block, Any]] = field(default_factory=dict)


@dataclass
class Node:
    idx: int
    key: PrivateKey
    behaviour: str  # honest | silent | equivocate | garbage | attack
    disk: Disk = field(default_factory=Disk)
    engine: ConsensusEngine | None = None
    app: KVApp | None = None
    alive: bool = True
    epoch: int = 0
    crash_after_persist: bool = False
    mempool: list[bytes] = field(default_factory=list)
    sync: dict[int, tuple[Block, Any]] = field(default_factory=dict)
    catchup_sent: dict[tuple[int, int], int] = field(default_factory=dict)

    @property
    def honest(self) -> bool:
        return self.behaviour == "honest"

    @property
    def height(self) -> int:  # last committed height
        return self.engine.chain.last_height if self.engine else 0


@dataclass
class SimResult:
    seed: int
    scenario: str
    validators: int
    violations: list[str]
    heights: dict[int, int]
    virtual_ms: int
    max_round: int
    evidence: int
    replay: str

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def safety_violated(self) -> bool:
        return any(v.startswith("agreement") for v in self.violations)

    def report(self) -> str:
        head = (f"seed={self.seed} scenario={self.scenario} n={self.validators} "
                f"heights={self.heights} t={self.virtual_ms}ms max_round={self.max_round} "
                f"evidence={self.evidence}")
        if self.ok:
            return head + " OK"
        return head + "\n  " + "\n  ".join(self.violations) + f"\n  replay: {self.replay}"


class Simulation:
    def __init__(self, seed: int, scenario: Scenario):
        self.seed = seed
        self.sc = scenario
        self.rng = random.Random(seed)
        self.now = 0
        self._queue: list[tuple[int, int, int, int, int, Any]] = []
        self._seq = 0
        self.violations: list[str] = []
        self.decided: dict[int, tuple[bytes, int]] = {}  # height -> (hash, first honest node)
        self.evidence_seen = 0
        self.max_round = 0
        self.partition: list[set[int]] | None = None
        self.stable_at = 0
        self.stable = False
        self.target_height: int | None = None
        self.attacked: set[tuple[int, int]] = set()
        n = scenario.validators
        byz = faults(n) if scenario.byzantine < 0 else scenario.byzantine
        keys = [PrivateKey(sha256(b"sim-validator-%d" % i)) for i in range(n)]
        powers = [self.rng.randint(1, 3) if scenario.weighted else 1 for _ in range(n)]
        self.validator_set = ValidatorSet(
            Validator(k.public_key, p) for k, p in zip(keys, powers, strict=True))
        behaviours = ["honest"] * n
        byz_nodes = self.rng.sample(range(n), byz) if byz else []
        kinds = ["silent", "equivocate", "garbage"]
        for j, i in enumerate(byz_nodes):
            b = scenario.behaviour
            behaviours[i] = kinds[(j + seed) % len(kinds)] if b == "mixed" else b
        self.nodes = [Node(i, keys[i], behaviours[i]) for i in range(n)]
        if scenario.valset_changes:  # a standby node that the chain will add as a validator
            self.nodes.append(Node(n, PrivateKey(sha256(b"sim-standby")), "honest"))
        self.genesis = ChainState.genesis(CHAIN_ID, self.validator_set, GENESIS_TIME_MS)
        self._plan()

    # --- schedule ----------------------------------------------------------------------

    def _push(self, delay: int, kind: int, node: int, epoch: int, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (self.now + delay, self._seq, kind, node, epoch, payload))

    def _plan(self) -> None:
        sc, rng = self.sc, self.rng
        stable = 0
        if sc.partition:
            start = rng.randint(500, 3000)
            length = rng.randint(1000, 8000)
            honest = [n.idx for n in self.nodes]
            rng.shuffle(honest)
            cut = rng.randint(1, len(honest) - 1)
            self._push(start, PARTITION, -1, 0, [set(honest[:cut]), set(honest[cut:])])
            self._push(start + length, HEAL, -1, 0, None)
            stable = max(stable, start + length)
        crashable = [n.idx for n in self.nodes if n.honest]
        for _ in range(sc.crashes):
            victim = rng.choice(crashable)
            at = rng.randint(300, 6000)
            self._push(at, CRASH, victim, 0, rng.random() < 0.5)
            down = rng.randint(100, 3000)
            self._push(at + down, RESTART, victim, 0, None)
            stable = max(stable, at + down + 1)
        if sc.drop or sc.duplicate:
            stable = max(stable, rng.randint(2000, 8000))
        self._push(stable, STABLE, -1, 0, None)
        for t in range(0, 60_000, 400):
            self._push(t + rng.randint(0, 399), INJECT, -1, 0, b"set:k%d=v%d" % (
                rng.randint(0, 20), rng.randint(0, 10**6)))
        if sc.valset_changes:
            standby = self.nodes[-1].key.public_key.hex().encode()
            first = self.validator_set.validators[0].pubkey.hex().encode()
            second = self.validator_set.validators[1].pubkey.hex().encode()
            self._push(rng.randint(200, 800), INJECT, -1, 0, b"val:" + standby + b":1")
            self._push(rng.randint(1500, 2500), INJECT, -1, 0, b"val:" + first + b":3")
            self._push(rng.randint(3000, 4000), INJECT, -1, 0, b"val:" + second + b":0")

    # --- node lifecycle ------------------------------------------------------------------

    def _boot(self, node: Node) -> None:
        d = node.disk
        chain = ChainState.decode(d.chain) if d.chain else self.genesis
        node.app = KVApp.restore(d.app) if d.app else KVApp()
        signing = SigningState.decode(d.signing) if d.signing else SigningState()
        guard = SigningGuard(node.key, CHAIN_ID, signing)
        node.engine = ConsensusEngine(chain, ENGINE_CONFIG, guard)
        node.alive = True
        node.sync.clear()
        self._execute(node, node.engine.start(self.now))
        if node.engine is None:
            return
        wal = [decode_event(e) for h, e in d.wal if h == chain.next_height]
        self._execute(node, node.engine.replay(wal))

    def _crash(self, node: Node) -> None:
        node.alive = False
        node.epoch += 1
        node.engine = None
        node.app = None
        node.crash_after_persist = False

    # --- actions -------------------------------------------------------------------------

    def _execute(self, node: Node, actions: list) -> None:
        for action in actions:
            if node.engine is None:
                return  # crashed in the middle of this action list
            if isinstance(action, AppendWAL):
                node.disk.wal.append((action.height, action.entry))
            elif isinstance(action, PersistSigningState):
                node.disk.signing = action.state.encode()
                if node.crash_after_persist:
                    self._crash(node)  # persisted, but the signed message never left
                    return
            elif isinstance(action, Broadcast):
                if node.honest:
                    self._check_persisted(node, action.message)
                self._broadcast(node, action.message)
            elif isinstance(action, ScheduleTimeout):
                self._push(action.duration_ms, TIMER, node.idx, node.epoch,
                           (action.height, action.round, action.step))
            elif isinstance(action, BuildProposal):
                prepared = node.app.prepare_proposal(action.template, node.mempool[:50])
                self._push(APP_LATENCY_MS, APP, node.idx, node.epoch, ProposalBuilt(
                    action.height, action.round, prepared.txs, prepared.app_hash, 0))
            elif isinstance(action, ProcessProposal):
                res = node.app.process_proposal(action.block)
                self._push(APP_LATENCY_MS, APP, node.idx, node.epoch, ProposalProcessed(
                    action.height, action.block.hash, res.valid, res.app_hash, 0))
            elif isinstance(action, Commit):
                self._commit(node, action.block, action.certificate)
            elif isinstance(action, EvidenceFound):
                self.evidence_seen += 1

    def _check_persisted(self, node: Node, msg: Proposal | Vote) -> None:
        """A message we signed may leave only once the signing state covering it is on disk."""
        engine = node.engine
        if isinstance(msg, Vote):
            if msg.validator_index != engine.my_index:
                return  # a relayed vote of another validator
            step = 2 if msg.type == VoteType.PREVOTE else 3
        else:
            if engine.validators.proposer_index(msg.height, msg.round) != engine.my_index:
                return
            step = 1
        disk = SigningState.decode(node.disk.signing) if node.disk.signing else SigningState()
        if (msg.height, msg.round, step) > disk.hrs():
            self.violations.append(f"persistence: node {node.idx} sent {(msg.height, msg.round, step)}"
                                   f" before persisting it (disk has {disk.hrs()})")

    def _commit(self, node: Node, block: Block, cert: Any) -> None:
        h = block.height
        engine = node.engine
        if node.honest:
            try:
                verify_commit(cert, engine.chain.validators.at(h), CHAIN_ID, height=h,
                              block_hash=block.hash)
            except ConsensusError as exc:
                self.violations.append(f"certificate: node {node.idx} height {h}: {exc}")
            first = self.decided.get(h)
            if first is None:
                self.decided[h] = (block.hash, node.idx)
            elif first[0] != block.hash:
                self.violations.append(
                    f"agreement: height {h}: node {node.idx} committed {block.hash.hex()[:16]}, "
                    f"node {first[1]} committed {first[0].hex()[:16]}")
        self.max_round = max(self.max_round, cert.round)
        fin = node.app.finalize_block(block)
        if fin.app_hash != block.header.app_hash:
            self.violations.append(f"app hash: node {node.idx} height {h} diverged")
        node.app.commit()
        # One atomic write: block + certificate + app state + chain state; WAL of h dropped.
        new_chain = engine.chain.advance(block, cert, fin.validator_updates)
        d = node.disk
        d.blocks[h] = (block, cert)
        d.chain = new_chain.encode()
        d.app = node.app.snapshot()
        d.wal = [(wh, e) for wh, e in d.wal if wh > h]
        committed = set(block.txs)
        node.mempool = [tx for tx in node.mempool if tx not in committed]
        self._push(0, APP, node.idx, node.epoch, BlockFinalized(h, fin.validator_updates, 0))

    # --- network -------------------------------------------------------------------------

    def _send(self, src: int, dst: int, data: bytes) -> None:
        sc, rng = self.sc, self.rng
        if self.partition and not any(src in g and dst in g for g in self.partition):
            return
        if not self.stable and rng.random() < sc.drop:
            return
        copies = 2 if (not self.stable and rng.random() < sc.duplicate) else 1
        for _ in range(copies):
            self._push(rng.randint(*sc.delay_ms), DELIVER, dst, 0, (src, data))

    def _peers(self, node: Node) -> list[int]:
        return [n.idx for n in self.nodes if n.idx != node.idx]

    def _broadcast(self, node: Node, msg: Proposal | Vote) -> None:
        b = node.behaviour
        if b == "silent":
            return
        if b == "equivocate":
            self._equivocate(node, msg)
            return
        if b == "attack":
            self._attack(node, msg)
            return
        data = encode_message(msg)
        for peer in self._peers(node):
            self._send(node.idx, peer, data)
        if b == "garbage":
            self._garbage(node, msg)

    def _halves(self, node: Node) -> tuple[list[int], list[int]]:
        peers = self._peers(node)
        return peers[: len(peers) // 2], peers[len(peers) // 2:]

    def _conflicting_vote(self, node: Node, v: Vote, block_hash: bytes | None) -> Vote:
        sb = vote_sign_bytes(v.type, v.height, v.round, block_hash, v.timestamp_ms,
                             v.validator_index)
        return Vote(v.type, v.height, v.round, block_hash, v.timestamp_ms, v.validator_index,
                    node.key.sign(DOMAIN_VOTE, CHAIN_ID, sb), sb)

    def _alt_proposal(self, node: Node, p: Proposal) -> Proposal:
        block = p.block
        txs = block.txs + (b"set:evil=%d" % (p.round + 1000 * p.height),)
        prepared = node.app.prepare_proposal(block, txs)
        header = replace(block.header, txs_root=txs_root(prepared.txs),
                         app_hash=prepared.app_hash, hash=b"")
        alt = Block(header, prepared.txs, block.evidence, block.last_commit)
        sb = proposal_sign_bytes(p.height, p.round, p.pol_round, alt.hash, p.timestamp_ms)
        return Proposal(p.height, p.round, p.pol_round, alt.hash, p.timestamp_ms,
                        node.key.sign(DOMAIN_PROPOSAL, CHAIN_ID, sb), alt)

    def _equivocate(self, node: Node, msg: Proposal | Vote) -> None:
        a, b = self._halves(node)
        if isinstance(msg, Proposal):
            other: Proposal | Vote = self._alt_proposal(node, msg)
        else:
            fake = None if msg.block_hash is not None else sha256(b"fake%d" % msg.round)
            other = self._conflicting_vote(node, msg, fake)
        for peers, m in ((a, msg), (b, other)):
            data = encode_message(m)
            for peer in peers:
                self._send(node.idx, peer, data)

    def _attack(self, node: Node, msg: Proposal | Vote) -> None:
        """A coalition: a member's proposal is forked in two, one per side of the honest
        nodes, and every member prevotes and precommits each fork to its side."""
        honest = [n.idx for n in self.nodes if n.honest]
        sides = [honest[: (len(honest) + 1) // 2], honest[(len(honest) + 1) // 2:]]
        members = [n for n in self.nodes if n.behaviour == "attack" and n.alive and n.engine]
        if isinstance(msg, Proposal) and msg.pol_round == -1:
            self.attacked.add((msg.height, msg.round))
            forks = [msg, self._alt_proposal(node, msg)]
            for side, p in zip(sides, forks, strict=True):
                for dst in side:
                    self._send(node.idx, dst, encode_message(p))
                for m in members:
                    idx = m.engine.validators.index_of(m.key.public_key)
                    if idx is None:
                        continue
                    for vtype in (VoteType.PREVOTE, VoteType.PRECOMMIT):
                        sb = vote_sign_bytes(vtype, p.height, p.round, p.block_hash, self.now, idx)
                        v = Vote(vtype, p.height, p.round, p.block_hash, self.now, idx,
                                 m.key.sign(DOMAIN_VOTE, CHAIN_ID, sb), sb)
                        for dst in side:
                            self._send(m.idx, dst, encode_message(v))
            for m in members:
                if m.idx != node.idx:
                    self._send(node.idx, m.idx, encode_message(msg))
            return
        attacked = (msg.height, msg.round) in self.attacked
        data = encode_message(msg)
        for peer in self._peers(node):
            if attacked and self.nodes[peer].honest:
                continue
            self._send(node.idx, peer, data)

    def _garbage(self, node: Node, msg: Proposal | Vote) -> None:
        rng = self.rng
        data = encode_message(msg)
        junk = [
            bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 40))),
            data[: rng.randint(0, len(data) - 1)],
            bytearray(data),
        ]
        pos = rng.randrange(len(data))
        junk[2][pos] ^= 1 + rng.randrange(255)
        junk[2] = bytes(junk[2])
        if isinstance(msg, Vote):  # well-formed, but signed by nobody / claiming another index
            forged = replace(msg, signature=bytes(64))
            other = replace(msg, validator_index=(msg.validator_index + 1) % 4, sign_bytes=b"")
            junk += [encode_message(forged), encode_message(other)]
        for peer in self._peers(node):
            self._send(node.idx, peer, rng.choice(junk))

    def _deliver(self, node: Node, src: int, data: bytes) -> None:
        try:
            msg = decode_message(data)
        except ConsensusError:
            return
        engine = node.engine
        if isinstance(msg, CommitMessage):
            h = msg.block.height
            if h == engine.height:
                self._feed(node, CommitReceived(msg.block, msg.certificate, self.now))
            elif engine.height < h <= engine.height + 8:
                node.sync[h] = (msg.block, msg.certificate)
            return
        if msg.height < engine.height:
            self._catch_up(node, src, msg.height)
        elif msg.height > engine.height:  # the sender is ahead: ask it for what we miss
            self._catch_up(self.nodes[src], node.idx, engine.height)
        if isinstance(msg, Vote):
            self.max_round = max(self.max_round, msg.round)
            self._feed(node, VoteReceived(msg, self.now))
        else:
            self._feed(node, ProposalReceived(msg, self.now))

    def _catch_up(self, node: Node, peer: int, height: int) -> None:
        """Block sync's job in a real node: send a lagging peer the commits it misses."""
        if not node.honest:
            return
        last = node.catchup_sent.get((peer, height))
        if last is not None and self.now - last < CATCHUP_INTERVAL_MS:
            return
        node.catchup_sent[(peer, height)] = self.now
        for h in range(height, min(height + 8, node.height + 1)):
            stored = node.disk.blocks.get(h)
            if stored:
                self._send(node.idx, peer, encode_message(CommitMessage(*stored)))

    # --- main loop -----------------------------------------------------------------------

    def _feed(self, node: Node, event: Any) -> None:
        if node.engine is None:
            return
        before = node.engine.height
        self._execute(node, node.engine.handle(event))
        engine = node.engine
        if engine is not None and engine.height != before and engine.height in node.sync:
            block, cert = node.sync.pop(engine.height)
            self._feed(node, CommitReceived(block, cert, self.now))

    def _honest_heights(self) -> dict[int, int]:
        return {n.idx: (ChainState.decode(n.disk.chain).last_height if n.disk.chain else 0)
                for n in self.nodes if n.honest}

    def run(self) -> SimResult:
        for node in self.nodes:
            self._boot(node)
        sc = self.sc
        deadline = None
        while self._queue:
            t, _, kind, idx, epoch, payload = heapq.heappop(self._queue)
            self.now = t
            if deadline is not None and t > deadline:
                break
            node = self.nodes[idx] if idx >= 0 else None
            if kind == DELIVER:
                if node.alive:
                    self._deliver(node, payload[0], payload[1])
            elif kind in (TIMER, APP):
                if node.alive and epoch == node.epoch:
                    ev = (TimeoutFired(payload[0], payload[1], payload[2], t) if kind == TIMER
                          else replace(payload, now_ms=t))
                    self._feed(node, ev)
            elif kind == CRASH:
                if payload:
                    node.crash_after_persist = True
                else:
                    self._crash(node)
            elif kind == RESTART:
                if not node.alive or node.crash_after_persist:
                    self._crash(node)
                    self._boot(node)
            elif kind == INJECT:
                for n in self.nodes:
                    if n.alive and n.honest and payload not in n.mempool:
                        n.mempool.append(payload)
            elif kind == PARTITION:
                self.partition = payload
            elif kind == HEAL:
                self.partition = None
            elif kind == STABLE:
                self.stable = True
                self.stable_at = t
                top = max(self._honest_heights().values())
                self.target_height = max(sc.min_height, top + sc.heights_after_stable)
                deadline = t + sc.liveness_window_ms
            if any(v.startswith("agreement") for v in self.violations):
                break  # safety is already lost: nothing more to learn from this run
            if self.target_height is not None and kind in (APP, DELIVER) and all(
                    h >= self.target_height for h in self._honest_heights().values()):
                break
        heights = self._honest_heights()
        if self.target_height is None or any(h < self.target_height for h in heights.values()):
            self.violations.append(
                f"liveness: network stable at {self.stable_at}ms, honest heights {heights} "
                f"did not all reach {self.target_height} within {sc.liveness_window_ms}ms")
        self._check_chains()
        return SimResult(self.seed, sc.name, sc.validators, self.violations, heights, self.now,
                         self.max_round, self.evidence_seen,
                         replay_command(self.seed, sc))

    def _check_chains(self) -> None:
        """Every stored block links to its parent and carries its parent's valid commit."""
        for node in self.nodes:
            if not node.honest or not node.disk.chain:
                continue
            history = ChainState.decode(node.disk.chain).validators
            blocks = node.disk.blocks
            for h in sorted(blocks):
                block, cert = blocks[h]
                try:
                    verify_commit(cert, history.at(h), CHAIN_ID, height=h, block_hash=block.hash)
                    if h > 1 and h - 1 in blocks:
                        if block.header.prev_hash != blocks[h - 1][0].hash:
                            raise ConsensusError("block does not link to its parent")
                        verify_commit(block.last_commit, history.at(h - 1), CHAIN_ID,
                                      height=h - 1, block_hash=block.header.prev_hash)
                    if block.header.validators_hash != history.at(h).hash:
                        raise ConsensusError("validators_hash differs from the history")
                except ConsensusError as exc:
                    self.violations.append(f"certificate: node {node.idx} height {h}: {exc}")


def run(seed: int, scenario: str | Scenario = "clean", validators: int | None = None) -> SimResult:
    sc = SCENARIOS[scenario] if isinstance(scenario, str) else scenario
    if validators is not None:
        sc = sc.with_validators(validators)
    return Simulation(seed, sc).run()


def describe(sim: Simulation) -> str:
    """Engine states at the end of a run, for debugging a failing seed."""
    lines = []
    for n in sim.nodes:
        e = n.engine
        if e is None:
            lines.append(f"node {n.idx} ({n.behaviour}): down")
            continue
        lines.append(f"node {n.idx} ({n.behaviour}): h={e.height} r={e.round} {e.phase.name} "
                     f"locked={e.locked_round} valid={e.valid_round} "
                     f"props={sorted(e.proposals)} validity={list(e.validity.values())} "
                     f"processing={len(e.processing)} my_index={e.my_index}")
    return "\n".join(lines)
