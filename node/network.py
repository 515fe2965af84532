"""The node's use of the p2p network: consensus gossip, tx gossip and block sync.

One handler receives every message the transport delivers and routes it by channel:

- CONSENSUS: proposals, votes and decided blocks (consensus.messages). Messages of the
  current height are checked (signature against the validator set) before they reach the
  engine and are relayed once (a seen-cache stops echoes). A peer that sends undecodable
  data or a bad signature is punished. A peer that votes at a height we have already
  committed is behind: it is sent the decided block with its commit certificate, which its
  engine accepts as proof (CommitReceived).
- TXS: batches of raw txs. New txs enter the mempool (stateless-invalid ones punish the
  sender); every tx added to the mempool is gossiped in batches to each peer that has not
  sent it to us or received it from us.
- BLOCKSYNC: peers announce their height on connect and after each commit. A node whose
  peers are more than one block ahead downloads the missing blocks with their commit
  certificates from several peers in parallel, and feeds them to the engine in height
  order as CommitReceived: the engine verifies +2/3 signatures against the validator set
  it knows (following validator changes) and the application executes and stores them
  through the normal commit path. Consensus keeps running meanwhile, so the node joins it
  as soon as it has caught up.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from consensus.block import Block
from consensus.errors import ConsensusError
from consensus.events import CommitReceived, ProposalReceived, VoteReceived
from consensus.messages import (
    CommitCertificate,
    CommitMessage,
    Proposal,
    Vote,
    VoteType,
    decode_message,
    encode_message,
    verify_vote,
)
from core.encoding import decode, encode_trusted
from core.errors import DecodeError
from core.hashing import sha256
from core.keys import DOMAIN_PROPOSAL, signing_payload
from core.recent import RecentSet
from node.driver import now_ms
from node.mempool import MempoolError
from node.verifier import MIN_CHUNK

if TYPE_CHECKING:
    from node.node import Node

log = logging.getLogger("chainmerce.net")

CONSENSUS, TXS, BLOCKSYNC = 1, 2, 3

# block sync message kinds
SYNC_STATUS_REQUEST, SYNC_STATUS, SYNC_GET_BLOCK, SYNC_BLOCK, SYNC_NO_BLOCK = 1, 2, 3, 4, 5

TX_BATCH_MAX = 512
TX_FLUSH_SECONDS = 0.01
TX_INBOX_BATCHES = 64  # gossiped batches waiting for verification (64 x 512 txs at most)
# Each RecentSet always holds the last half of its capacity (core.recent).
# Consensus messages: the last 10,000 are five heights of 1,000 validators voting twice.
SEEN_CACHE = 20_000
# What a peer sent us or we sent it, so our flush after admission does not send it back:
# the last 32,768 at least, about a full inbox (64 batches of 512); forgetting one early
# costs a redundant send, which the peer drops by hash.
PEER_KNOWN_TXS = 2 * TX_INBOX_BATCHES * TX_BATCH_MAX
SYNC_WINDOW = 64  # blocks requested ahead of the one being applied
SYNC_PER_PEER = 16  # requests in flight per peer
SYNC_REQUEST_TIMEOUT = 5.0
MAX_SYNC_MESSAGE = 16 * 1024 * 1024

PUNISH_UNDECODABLE = 100  # a clear protocol violation: ban at once
PUNISH_BAD_SIGNATURE = 50
PUNISH_BAD_TX = 20
PUNISH_BAD_BLOCK = 100
PUNISH_BROKEN_PROMISE = 10


class PeerState:
    __slots__ = ("known_txs", "height", "sent_commit_heights", "in_flight")

    def __init__(self) -> None:
        self.known_txs = RecentSet(PEER_KNOWN_TXS)
        self.height = 0
        self.sent_commit_heights = RecentSet(64)
        self.in_flight: dict[int, float] = {}  # block height -> request time


class NodeNetworkHandler:
    """Implements p2p's MessageHandler for a Node."""

    def __init__(self, node: Node):
        self.node = node
        self.peers: dict[bytes, PeerState] = {}
        self.seen = RecentSet(SEEN_CACHE)
        self._tx_outbox: list[Any] = []
        self._tx_inbox: list[tuple[bytes, list[tuple[bytes, bytes]]]] = []  # peer, (hash, raw)
        self._tx_task: asyncio.Task | None = None
        self.dropped_tx_batches = 0
        self._flush_scheduled = False
        self._pending_blocks: dict[int, tuple[Block, CommitCertificate, bytes]] = {}
        self._sync_task: asyncio.Task | None = None
        self._apply_task: asyncio.Task | None = None
        self._verifying: dict[int, asyncio.Task] = {}
        self._proposal_tasks: set[asyncio.Task] = set()
        self.synced_blocks = 0

    @property
    def network(self):
        return self.node.network

    # --- MessageHandler -------------------------------------------------------------------

    def on_peer_connected(self, peer_id: bytes) -> None:
        self.peers[peer_id] = PeerState()
        self.network.send(peer_id, BLOCKSYNC, encode_trusted([SYNC_STATUS_REQUEST]))
        self.network.send(peer_id, BLOCKSYNC, self._status_message())
        txs = self.node.mempool.txs(TX_BATCH_MAX)
        if txs:
            self._send_txs(peer_id, txs)

    def on_peer_disconnected(self, peer_id: bytes) -> None:
        self.peers.pop(peer_id, None)

    def on_message(self, peer_id: bytes, channel: int, payload: bytes) -> None:
        peer = self.peers.get(peer_id)
        if peer is None:
            return
        try:
            if channel == CONSENSUS:
                self._on_consensus(peer_id, peer, payload)
            elif channel == TXS:
                self._on_txs(peer_id, peer, payload)
            elif channel == BLOCKSYNC:
                self._on_sync(peer_id, peer, payload)
        except (ConsensusError, DecodeError, ValueError, TypeError, IndexError) as exc:
            self.network.punish(peer_id, f"undecodable message on channel {channel}: {exc}",
                                PUNISH_UNDECODABLE)

    # --- consensus ------------------------------------------------------------------------

    def broadcast_consensus(self, message: Proposal | Vote) -> None:
        payload = encode_message(message)
        self.seen.add(sha256(payload))
        if self.network is not None:
            self.network.broadcast(CONSENSUS, payload)

    def _on_consensus(self, peer_id: bytes, peer: PeerState, payload: bytes) -> None:
        digest = sha256(payload)
        if digest in self.seen:
            return
        message = decode_message(payload)
        engine = self.node.engine
        if isinstance(message, CommitMessage):
            self.seen.add(digest)
            if message.block.height == engine.height:
                self.node.driver.feed(CommitReceived(message.block, message.certificate,
                                                     now_ms()))
            return
        height = message.height
        last = engine.chain.last_height
        late_precommit = (height == last and isinstance(message, Vote)
                          and message.type == VoteType.PRECOMMIT)
        if height <= last and not late_precommit:
            # a proposal or prevote of a height we decided: the peer has not decided it yet
            self._help_peer_behind(peer_id, peer, height)
            return
        validators = engine.chain.validators.at(height)
        if isinstance(message, Vote):
            if not verify_vote(message, validators, engine.chain.chain_id, engine.cache):
                self.network.punish(peer_id, "vote with an invalid signature",
                                    PUNISH_BAD_SIGNATURE)
                return
            # a validly signed vote at height h means the network decided h-1: only then
            # does the claim count (an unsigned claim could keep us "catching up" forever)
            peer.height = max(peer.height, height - 1)
            if height > engine.height + 1:
                self._maybe_sync()
                return
            event: Any = VoteReceived(message, now_ms())
        else:
            if height > engine.height + 1:
                return  # far-future proposals are useless; block sync covers the gap
            proposer = validators.proposer(message.height, message.round)
            signed = engine.cache.verify(
                proposer.pubkey,
                signing_payload(DOMAIN_PROPOSAL, engine.chain.chain_id, message.sign_bytes),
                message.signature)
            if not signed:
                self.network.punish(peer_id, "proposal not signed by the round's proposer",
                                    PUNISH_BAD_SIGNATURE)
                return
            event = ProposalReceived(message, now_ms())
        self.seen.add(digest)
        self.network.broadcast(CONSENSUS, payload, exclude=peer_id)
        if isinstance(event, ProposalReceived) and self._verify_first(event):
            return
        self.node.driver.feed(event)

    def _verify_first(self, event: ProposalReceived) -> bool:
        """A proposal often carries txs whose gossip has not reached us yet: executing it
        would decode and verify them on the loop. Verify those in the pool first and feed
        the proposal when they are done (votes that arrive meanwhile go ahead: the engine
        takes a round's messages in any order). False: nothing to verify, feed it now."""
        known = self.node.known_tx
        block = event.proposal.block
        unknown = [raw for raw, tx_hash in zip(block.txs, block.tx_hashes(), strict=True)
                   if known(tx_hash) is None]
        if len(unknown) < MIN_CHUNK:
            return False

        async def verify_then_feed() -> None:
            await self.node.verifier.check_many(unknown, urgent=True)
            if not self.node.stopping:
                self.node.driver.feed(event)

        task = asyncio.get_running_loop().create_task(verify_then_feed())
        self._proposal_tasks.add(task)
        task.add_done_callback(self._proposal_tasks.discard)
        return True

    def _help_peer_behind(self, peer_id: bytes, peer: PeerState, height: int) -> None:
        if not peer.sent_commit_heights.add(height.to_bytes(8, "big")):
            return
        db = self.node.db
        block_raw, commit_raw = db.blocks.get_block(height), db.blocks.get_commit(height)
        if block_raw is None or commit_raw is None:
            return
        block = Block.from_list(decode(block_raw, MAX_SYNC_MESSAGE))
        cert = CommitCertificate.from_list(decode(commit_raw, MAX_SYNC_MESSAGE))
        self.network.send(peer_id, CONSENSUS, encode_message(CommitMessage(block, cert)))

    # --- txs ------------------------------------------------------------------------------

    def tx_added(self, txs: list[Any]) -> None:
        """The mempool admitted these txs: gossip them soon, in a batch."""
        if self.network is None or not self.peers:
            return
        self._tx_outbox.extend(txs)
        if len(self._tx_outbox) >= TX_BATCH_MAX:
            self._flush_txs()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_later(TX_FLUSH_SECONDS, self._flush_txs)

    def _flush_txs(self) -> None:
        self._flush_scheduled = False
        outbox, self._tx_outbox = self._tx_outbox, []
        if not outbox:
            return
        for peer_id in list(self.peers):
            self._send_txs(peer_id, outbox)

    def _send_txs(self, peer_id: bytes, txs: list[Any]) -> None:
        peer = self.peers.get(peer_id)
        if peer is None:
            return
        fresh = [tx.raw for tx in txs if peer.known_txs.add(tx.hash)]
        for start in range(0, len(fresh), TX_BATCH_MAX):
            self.network.send(peer_id, TXS, encode_trusted(fresh[start:start + TX_BATCH_MAX]))

    def _on_txs(self, peer_id: bytes, peer: PeerState, payload: bytes) -> None:
        raws = decode(payload, MAX_SYNC_MESSAGE)
        if not isinstance(raws, list) or len(raws) > TX_BATCH_MAX or \
                not all(isinstance(r, bytes) for r in raws):
            raise ValueError("a tx batch is a list of at most 512 byte strings")
        fresh = []
        for raw in raws:
            tx_hash = sha256(raw)
            peer.known_txs.add(tx_hash)  # never send it back
            if not self.node.mempool.knows(tx_hash):
                fresh.append((tx_hash, raw))
        if not fresh:
            return
        if len(self._tx_inbox) >= TX_INBOX_BATCHES:
            # The origin keeps the txs in its pool and proposes them in its turn: dropping
            # gossip under overload loses nothing and keeps memory bounded.
            self.dropped_tx_batches += 1
            return
        self._tx_inbox.append((peer_id, fresh))
        if self._tx_task is None or self._tx_task.done():
            self._tx_task = asyncio.get_running_loop().create_task(self._drain_tx_inbox())

    async def _drain_tx_inbox(self) -> None:
        """Verify gossiped txs in the pool, then admit them in arrival order."""
        while self._tx_inbox and not self.node.stopping:
            batches, self._tx_inbox = self._tx_inbox, []
            # Several peers relay the same tx: verify each once, and none admitted meanwhile.
            knows, verified = self.node.mempool.knows, self.node.verifier.get
            unique = {h: raw for _, txs in batches for h, raw in txs
                      if not knows(h) and verified(h) is None}
            await self.node.verifier.check_many(list(unique.values()))
            if self.node.stopping:
                return
            for peer_id, txs in batches:
                for tx_hash, raw in txs:
                    self._admit_gossiped(peer_id, tx_hash, raw)

    def _admit_gossiped(self, peer_id: bytes, tx_hash: bytes, raw: bytes) -> None:
        try:
            self.node.submit(raw, tx_hash)
        except MempoolError as err:
            if 100 <= err.code < 200 and self.network is not None:
                # malformed or mis-signed: nobody honest relays it
                self.network.punish(peer_id, f"relayed an invalid tx ({err.name})",
                                    PUNISH_BAD_TX)

    # --- block sync -------------------------------------------------------------------------

    def _status_message(self) -> bytes:
        chain = self.node.engine.chain
        return encode_trusted([SYNC_STATUS, chain.initial_height, chain.last_height])

    def committed(self, height: int) -> None:
        """After each commit: tell peers our height (they decide whether to sync from us)."""
        if self.network is not None and self.peers:
            self.network.broadcast(BLOCKSYNC, self._status_message())
        self._pending_blocks.pop(height, None)
        verifying = self._verifying.pop(height, None)
        if verifying is not None:
            verifying.cancel()
        for peer in self.peers.values():
            peer.in_flight.pop(height, None)

    @property
    def catching_up(self) -> bool:
        best = max((p.height for p in self.peers.values()), default=0)
        return best > self.node.engine.chain.last_height + 1

    def _on_sync(self, peer_id: bytes, peer: PeerState, payload: bytes) -> None:
        message = decode(payload, MAX_SYNC_MESSAGE)
        if not isinstance(message, list) or not message:
            raise ValueError("a block sync message is a non-empty list")
        kind = message[0]
        if kind == SYNC_STATUS_REQUEST:
            self.network.send(peer_id, BLOCKSYNC, self._status_message())
        elif kind == SYNC_STATUS:
            _, _base, height = message
            if not isinstance(height, int) or height < 0:
                raise ValueError("bad status height")
            peer.height = max(peer.height, height)
            self._maybe_sync()
        elif kind == SYNC_GET_BLOCK:
            self._serve_block(peer_id, message[1])
        elif kind == SYNC_BLOCK:
            _, height, block_raw, commit_raw = message
            self._receive_block(peer_id, peer, height, block_raw, commit_raw)
        elif kind == SYNC_NO_BLOCK:
            if peer.in_flight.pop(message[1], None) is not None:
                self._broken_promise(peer_id, peer, message[1])
        else:
            raise ValueError(f"unknown block sync message kind {kind!r}")

    def _serve_block(self, peer_id: bytes, height: Any) -> None:
        if not isinstance(height, int) or height < 1:
            raise ValueError("bad block request height")
        db = self.node.db
        block_raw, commit_raw = db.blocks.get_block(height), db.blocks.get_commit(height)
        if block_raw is None or commit_raw is None:
            self.network.send(peer_id, BLOCKSYNC, encode_trusted([SYNC_NO_BLOCK, height]))
        else:
            self.network.send(peer_id, BLOCKSYNC,
                              encode_trusted([SYNC_BLOCK, height, block_raw, commit_raw]))

    def _receive_block(self, peer_id: bytes, peer: PeerState, height: int, block_raw: bytes,
                       commit_raw: bytes) -> None:
        if peer.in_flight.pop(height, None) is None:
            return  # unsolicited or late: ignore
        block = Block.from_list(decode(block_raw, MAX_SYNC_MESSAGE))
        cert = CommitCertificate.from_list(decode(commit_raw, MAX_SYNC_MESSAGE))
        if block.height != height or cert.block_hash != block.hash or cert.height != height:
            self.network.punish(peer_id, "block sync answer does not match the request",
                                PUNISH_BAD_BLOCK)
            return
        if height > self.node.engine.chain.last_height:
            self._pending_blocks[height] = (block, cert, peer_id)
            # verify its txs in the pool now, while the loop applies the blocks before it
            self._verifying[height] = asyncio.get_running_loop().create_task(
                self.node.verifier.check_many(block.txs))
        if self._apply_task is None or self._apply_task.done():
            self._apply_task = asyncio.get_running_loop().create_task(self._apply_pending())
        self._request_blocks()

    async def _apply_pending(self) -> None:
        engine = self.node.engine
        while not self.node.stopping:
            nxt = engine.chain.last_height + 1
            if nxt not in self._pending_blocks:
                return
            verifying = self._verifying.pop(nxt, None)
            if verifying is not None:
                try:
                    await verifying
                except Exception:  # only an optimisation: execution verifies what is left
                    log.exception("verifying the txs of block %d failed", nxt)
            entry = self._pending_blocks.pop(nxt, None)
            if entry is None or self.node.stopping or engine.chain.last_height + 1 != nxt:
                continue  # decided meanwhile (consensus, or another copy of the block)
            block, cert, from_peer = entry
            self.node.driver.feed(CommitReceived(block, cert, now_ms()))
            if engine.chain.last_height < nxt:
                # the engine refused it: the certificate or the block is not valid
                self.network.punish(from_peer, f"block sync sent an invalid block {nxt}",
                                    PUNISH_BAD_BLOCK)
                return
            self.synced_blocks += 1
            if self.synced_blocks % 100 == 0:
                best = max((p.height for p in self.peers.values()), default=0)
                log.info("block sync: at height %d of %d", engine.chain.last_height, best)
            self._request_blocks()

    def _broken_promise(self, peer_id: bytes, peer: PeerState, height: int) -> None:
        """The peer claimed `height` but did not deliver it: stop believing the claim."""
        peer.height = min(peer.height, height - 1)
        self.network.punish(peer_id, f"did not deliver block {height} it claimed to have",
                            PUNISH_BROKEN_PROMISE)

    def _maybe_sync(self) -> None:
        if self.catching_up:
            self._request_blocks()
            if self._sync_task is None or self._sync_task.done():
                self._sync_task = asyncio.get_running_loop().create_task(self._sync_timer())

    def _request_blocks(self) -> None:
        chain = self.node.engine.chain
        start = chain.last_height + 1
        now = asyncio.get_running_loop().time()
        in_flight = {h for p in self.peers.values() for h in p.in_flight}
        for peer_id, peer in list(self.peers.items()):  # timed-out requests go elsewhere
            for h, when in list(peer.in_flight.items()):
                if now - when > SYNC_REQUEST_TIMEOUT:
                    del peer.in_flight[h]
                    in_flight.discard(h)
                    self._broken_promise(peer_id, peer, h)
        wanted = [h for h in range(start, start + SYNC_WINDOW)
                  if h not in in_flight and h not in self._pending_blocks]
        candidates = sorted(self.peers.items(), key=lambda kv: len(kv[1].in_flight))
        for height in wanted:
            for peer_id, peer in candidates:
                if peer.height >= height and len(peer.in_flight) < SYNC_PER_PEER:
                    peer.in_flight[height] = now
                    self.network.send(peer_id, BLOCKSYNC,
                                      encode_trusted([SYNC_GET_BLOCK, height]))
                    break

    async def _sync_timer(self) -> None:
        """While behind, keep the request window full and retry lost requests."""
        while self.catching_up and not self.node.driver.stopped:
            self._request_blocks()
            await asyncio.sleep(0.5)
        log.info("block sync: caught up at height %d", self.node.engine.chain.last_height)

    def stop(self) -> None:
        if self._tx_task is not None:
            self._tx_task.cancel()
        self._tx_inbox.clear()
        for task in (self._sync_task, self._apply_task, *self._verifying.values(),
                     *self._proposal_tasks):
            if task is not None:
                task.cancel()
        self._verifying.clear()
