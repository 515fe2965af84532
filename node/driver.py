"""Runs the sans-IO consensus engine under asyncio.

The engine returns actions; this driver executes them strictly in order:
- AppendWAL: buffered append to the consensus WAL (made durable by the next sync).
- PersistSigningState: WAL sync, then the signing state written and fsynced, BEFORE any
  later action runs, so the message it covers never leaves before it is on disk.
- Broadcast: handed to the network hook (none for a single validator).
- ScheduleTimeout: an asyncio timer that feeds TimeoutFired back.
- BuildProposal: txs from the mempool; if it is empty, wait up to empty_block_interval_ms
  for txs first (blocks keep coming when idle: order deadlines are block heights).
- ProcessProposal / Commit: the application; their answers are fed back as events.
Feeding an event and running its actions is synchronous, so the engine never sees two
events interleaved.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable

from consensus.block import Block
from consensus.chain import ChainState
from consensus.engine import ConsensusEngine
from consensus.events import (
    Action,
    AppendWAL,
    BlockFinalized,
    Broadcast,
    BuildProposal,
    Commit,
    Event,
    EvidenceFound,
    PersistSigningState,
    ProcessProposal,
    ProposalBuilt,
    ProposalProcessed,
    ScheduleTimeout,
    TimeoutFired,
)
from consensus.validators import ValidatorUpdate
from node.app import CommerceApp, CommittedBlock
from node.crashpoints import crash_point
from node.mempool import Mempool
from storage.signing_state import SigningState as StoredSigningState
from storage.signing_state import SigningStateFile
from storage.wal import WAL

log = logging.getLogger("chainmerce.consensus")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class ConsensusDriver:
    def __init__(self, engine: ConsensusEngine, app: CommerceApp, mempool: Mempool, wal: WAL,
                 signing_file: SigningStateFile | None, *, max_block_txs: int,
                 max_block_bytes: int, empty_block_interval_ms: int,
                 on_commit: Callable[[CommittedBlock], None],
                 on_broadcast: Callable[[object], None] = lambda _m: None):
        self.engine = engine
        self.app = app
        self.mempool = mempool
        self.wal = wal
        self.signing_file = signing_file
        self.max_block_txs = max_block_txs
        self.max_block_bytes = max_block_bytes
        self.empty_block_interval_ms = empty_block_interval_ms
        self.on_commit = on_commit
        self.on_broadcast = on_broadcast
        self._timers: dict[tuple[int, int, int], asyncio.TimerHandle] = {}
        self._pending_build: BuildProposal | None = None
        self._build_soon = False
        self._build_timer: asyncio.TimerHandle | None = None
        self._wal_height: int | None = None
        self._busy = False
        self._queue: deque[Event] = deque()
        self.stopped = False
        self.fault: BaseException | None = None

    # --- lifecycle -------------------------------------------------------------------------

    def start(self, wal_events: list[Event]) -> None:
        self._drive(lambda: self.engine.start(now_ms()))
        if wal_events:
            log.info("replaying %d consensus WAL entries of height %d",
                     len(wal_events), self.engine.chain.next_height)
            self._drive(lambda: self.engine.replay(wal_events))

    def stop(self) -> None:
        self.stopped = True
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        if self._build_timer is not None:
            self._build_timer.cancel()

    def feed(self, event: Event) -> None:
        """Hand one event to the engine (from the network, a timer, or the application)."""
        if self.stopped:
            return
        self._queue.append(event)
        if not self._busy:  # else the running loop picks it up: events never interleave
            self._drive(lambda: [])

    def _drive(self, first: Callable[[], list[Action]]) -> None:
        self._busy = True
        try:
            self._run(first())
            while self._queue and not self.stopped:
                self._run(self.engine.handle(self._queue.popleft()))
        except Exception as exc:  # an internal fault: stop consensus, never go on blindly
            log.exception("consensus stopped by an internal fault")
            self.fault = exc
            self.stop()
        finally:
            self._busy = False

    def txs_available(self) -> None:
        """The mempool got txs: a proposer waiting for them builds on the next loop turn,
        so every tx that arrives in the same burst lands in the same block."""
        if self._pending_build is not None and not self._build_soon:
            self._build_soon = True
            asyncio.get_running_loop().call_soon(self._build_pending, self._pending_build)

    # --- actions ---------------------------------------------------------------------------

    def _run(self, actions: list[Action]) -> None:
        for action in actions:
            if self.stopped:
                return
            self._execute(action)

    def _execute(self, action: Action) -> None:
        if isinstance(action, AppendWAL):
            if action.height != self._wal_height:
                self.wal.start_height(action.height)
                self._wal_height = action.height
                crash_point("driver.after_wal_start_height")
            self.wal.append(action.entry, sync=False)
            crash_point("driver.after_wal_append")
        elif isinstance(action, PersistSigningState):
            self.wal.sync()
            if self.signing_file is not None:
                s = action.state
                crash_point("driver.before_signing_save")
                self.signing_file.save(StoredSigningState(s.height, s.round, s.step, s.encode()))
                crash_point("driver.after_signing_save")
        elif isinstance(action, Broadcast):
            self.on_broadcast(action.message)
        elif isinstance(action, ScheduleTimeout):
            self._schedule(action)
        elif isinstance(action, BuildProposal):
            self._request_build(action)
        elif isinstance(action, ProcessProposal):
            self._process(action.block)
        elif isinstance(action, Commit):
            self._commit(action)
        elif isinstance(action, EvidenceFound):
            log.warning("duplicate-vote evidence against validator #%d at height %d",
                        action.evidence.validator_index, action.evidence.height)

    def _schedule(self, action: ScheduleTimeout) -> None:
        key = (action.height, action.round, int(action.step))
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.pop(key, None)
            self.feed(TimeoutFired(action.height, action.round, action.step, now_ms()))

        # Timers of past heights are left to fire: the engine ignores stale timeouts, and
        # the GOSSIP timer (re-sending our messages) must survive height changes.
        self._timers[key] = loop.call_later(action.duration_ms / 1000, fire)

    def _request_build(self, action: BuildProposal) -> None:
        if len(self.mempool) or self.empty_block_interval_ms == 0:
            self._build(action)
            return
        self._pending_build = action
        self._build_timer = asyncio.get_running_loop().call_later(
            self.empty_block_interval_ms / 1000, self._build_pending, action)

    def _build_pending(self, action: BuildProposal) -> None:
        """The waiting proposer's turn (txs arrived or the wait is over); stale calls for
        a proposal already built do nothing."""
        self._build_soon = False
        if self._pending_build is not action or self.stopped:
            return
        self._pending_build = None
        if self._build_timer is not None:
            self._build_timer.cancel()
            self._build_timer = None
        self._build(action)

    def _build(self, action: BuildProposal) -> None:
        candidates = self.mempool.reap(self.max_block_txs, self.max_block_bytes)
        prepared = self.app.prepare_proposal(action.template, candidates,
                                             self.engine.chain.validators.at)
        self.feed(ProposalBuilt(action.height, action.round, prepared.txs, prepared.app_hash,
                                now_ms()))

    def _process(self, block: Block) -> None:
        result = self.app.process_proposal(block, self.engine.chain.validators.at)
        self.feed(ProposalProcessed(block.height, block.hash, result.valid, result.app_hash,
                                    now_ms()))

    def _commit(self, action: Commit) -> None:
        chain: ChainState = self.engine.chain

        def next_chain_state(updates) -> bytes:
            return chain.advance(action.block, action.certificate, updates).encode()

        committed = self.app.commit(action.block, action.certificate, chain.validators.at,
                                    next_chain_state)
        crash_point("driver.after_commit")
        updates = tuple(ValidatorUpdate(pk, p) for pk, p in committed.execution.validator_updates)
        self.on_commit(committed)
        self.feed(BlockFinalized(action.block.height, updates, now_ms()))
