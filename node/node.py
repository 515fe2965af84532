"""A chainmerce node: storage, application, mempool, consensus and RPC wired together.

Lifecycle: `await node.start()` opens the chain database (writing genesis on first start),
rebuilds the consensus engine from what was persisted (chain state committed with the last
block, the signing state, the WAL of the height in progress), starts consensus and the RPC
server. `await node.stop()` stops RPC, consensus timers and closes the stores; SIGTERM and
SIGINT do the same in `run_node`.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import commerce_vm as vm
from commerce_vm.apphash import NODE_PREFIX as APP_HASH_NODE_PREFIX
from commerce_vm.ledger import UNCOMMITTED_PREFIXES
from commerce_vm.reuse import HandlerRecord
from consensus.chain import BlockLimits, ChainState
from consensus.engine import ConsensusEngine, EngineConfig
from consensus.errors import WALError as ConsensusWALError
from consensus.events import decode_event
from consensus.signing import SigningGuard
from consensus.signing import SigningState as EngineSigningState
from consensus.validators import Validator, ValidatorSet
from core.address import address_from_pubkey
from core.hashing import sha256
from node import byzantine
from node.app import META_CHAIN_STATE, AppFault, CommerceApp, CommittedBlock
from node.config import Config, load_config, parse_host_port
from node.driver import ConsensusDriver, now_ms
from node.genesis import Genesis, load_genesis
from node.home import Home, read_key_file
from node.mempool import Mempool, MempoolLimits
from node.network import NodeNetworkHandler
from node.rpc.dispatcher import Dispatcher
from node.rpc.errors import NODE_NOT_READY, RPCError
from node.rpc.server import RPCServer
from node.verifier import TxVerifier, default_workers, worker_command
from storage.chaindb import ChainDB
from storage.signing_state import SigningStateFile
from storage.wal import WAL

log = logging.getLogger("chainmerce.node")


@dataclass(slots=True)
class TxWaiter:
    future: asyncio.Future
    tx_hash: bytes


@dataclass(slots=True)
class NodeEvents:
    """What the node tells listeners after each commit.

    `waiters` are broadcast_tx_commit calls keyed by tx hash. `commit_listeners` are
    called with every CommittedBlock, in order, right after it is durably stored
    (WebSocket subscriptions, metrics); a listener must not block, and one that raises is
    logged and skipped, never allowed to stop consensus.
    """

    waiters: dict[bytes, list[asyncio.Future]] = field(default_factory=dict)
    new_block: asyncio.Event = field(default_factory=asyncio.Event)
    commit_listeners: list[Callable[[CommittedBlock], None]] = field(default_factory=list)


NetworkFactory = Callable[["Node", NodeNetworkHandler], Any]


def rpc_modules() -> list[Callable[[Dispatcher, Node], None]]:
    """Every module that registers JSON-RPC methods; add new ones here."""
    from node import metrics
    from node.rpc import openrpc, websocket
    from node.rpc.admin import register_admin
    from node.rpc.methods import register_methods

    return [register_methods, register_admin, websocket.register, metrics.register,
            openrpc.register]


def p2p_network(node: Node, handler: NodeNetworkHandler) -> Any:
    """The real transport (p2p/), configured from [p2p]."""
    from p2p import Network, NetworkConfig

    p2p = node.config["p2p"]
    config = NetworkConfig(listen=p2p["listen"],
                           persistent_peers=tuple(p2p["persistent_peers"]),
                           seeds=tuple(p2p["seeds"]),
                           max_inbound=p2p["max_inbound_peers"],
                           max_outbound=p2p["max_outbound_peers"],
                           moniker=node.config.get("node", "moniker"),
                           # block sync answers up to 16 blocks per peer in one go
                           send_queue_bytes=64 << 20)
    return Network(read_key_file(node.home.node_key_file), node.chain_id, config, handler)


class Node:
    network: Any = None  # the p2p Network once started (see node/network.py)
    subscriptions: Any = None  # node.rpc.websocket.SubscriptionHub, set by its register
    metrics: Any = None  # node.metrics.NodeMetrics, set by its register

    def __init__(self, home: Path, config: Config | None = None,
                 network_factory: NetworkFactory | None = p2p_network):
        self.home = Home(Path(home))
        self.config = config or load_config(self.home.config_file)
        self.genesis: Genesis = load_genesis(self.home.genesis_file)
        self.validator_key = read_key_file(self.home.validator_key_file)
        self.db: ChainDB | None = None
        self.rpc: RPCServer | None = None
        self.events = NodeEvents()
        self.stopped = asyncio.Event()
        self.stopping = False
        self.last_commit_time_ms = 0
        self.network_factory = network_factory
        self.net = NodeNetworkHandler(self)
        # rpc modules add HTTP routes and hooks here (see node.rpc.server.make_app)
        self.http_setup: list[Callable[[Any], None]] = []

    @property
    def chain_id(self) -> str:
        return self.genesis.chain_id

    # --- start ------------------------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.config
        byzantine_mode = byzantine.check_mode(cfg.get("consensus", "byzantine"), self.chain_id)
        self.home.data_dir.mkdir(parents=True, exist_ok=True)
        self.db = ChainDB.open(self.home.db_path, cfg.get("storage", "backend"),
                               state_cache_bytes=cfg.get("storage", "state_cache_bytes"),
                               # the app's TreeCache holds the app hash's inner nodes;
                               # execution never gets an index key (it scans x/), so
                               # caching the ones each buy writes would only crowd out
                               # the buckets and accounts it does read
                               uncached_state_prefixes=(APP_HASH_NODE_PREFIX,
                                                        *UNCOMMITTED_PREFIXES),
                               **(leveldb_options(cfg)
                                  if cfg.get("storage", "backend") == "leveldb" else {}))
        self.app = CommerceApp(self.db, self.genesis, known_tx=self.known_tx,
                               check_record=self.check_record)
        self.app.ensure_genesis()
        chain = self._load_chain_state()
        block_time = chain.last_block_time_ms
        mp = cfg["mempool"]
        self.mempool = Mempool(self.genesis.params, self.db.state, chain.last_height, block_time,
                               MempoolLimits(mp["max_txs"], mp["max_bytes"], mp["max_tx_bytes"],
                                             mp["max_txs_per_sender"], mp["ttl_blocks"]))
        self.verifier = TxVerifier(
            self.mempool.decode, cfg.get("node", "verify_workers") or default_workers(),
            worker_command(self.genesis.params.max_tx_size))
        self.wal = WAL(self.home.wal_file)
        self.signing_file = SigningStateFile(self.home.signing_state_file)
        stored = self.signing_file.load()
        guard_state = EngineSigningState.decode(stored.extra) if stored else None
        # Every node gets its signer: the engine signs only at heights where the key is in
        # the set, so a full node voted into the set starts signing at H+2 without a
        # restart (with no signer it stayed an observer until restarted, and the set
        # counted power that never voted).
        signer = SigningGuard(self.validator_key, self.chain_id, guard_state)
        cs = cfg["consensus"]
        engine_config = EngineConfig(
            timeout_propose_ms=cs["timeout_propose_ms"],
            timeout_propose_delta_ms=cs["timeout_propose_delta_ms"],
            timeout_prevote_ms=cs["timeout_prevote_ms"],
            timeout_prevote_delta_ms=cs["timeout_prevote_delta_ms"],
            timeout_precommit_ms=cs["timeout_precommit_ms"],
            timeout_precommit_delta_ms=cs["timeout_precommit_delta_ms"],
            timeout_commit_ms=cs["timeout_commit_ms"],
            limits=BlockLimits(max_txs=cs["max_block_txs"], max_block_bytes=cs["max_block_bytes"]),
        )
        self.engine = ConsensusEngine(chain, engine_config, signer)
        self.driver = ConsensusDriver(
            self.engine, self.app, self.mempool, self.wal, self.signing_file,
            max_block_txs=cs["max_block_txs"], max_block_bytes=cs["max_block_bytes"],
            empty_block_interval_ms=cs["empty_block_interval_ms"], on_commit=self._on_commit,
            on_broadcast=self.net.broadcast_consensus if byzantine_mode == byzantine.NONE
            else byzantine.Byzantine(self, byzantine_mode).broadcast)
        # Bind the listeners before consensus starts: a port already in use is then the
        # one error the operator sees, and nothing was signed or broadcast.
        dispatcher = Dispatcher(cfg.get("rpc", "max_batch_requests"))
        for register in rpc_modules():
            register(dispatcher, self)
        host, port = parse_host_port(cfg.get("rpc", "listen"))
        self.rpc = RPCServer(dispatcher, host, port, cfg.get("rpc", "max_body_bytes"),
                             self.http_setup, cfg.get("rpc", "max_open_connections"),
                             threaded=cfg.get("rpc", "reader_thread"))
        await self.rpc.start()
        if self.network_factory is not None:
            self.network = self.network_factory(self, self.net)
            await self.network.start()
        self.driver.start(self._wal_events(chain))
        log.info("node %s started: chain %s, height %d, rpc http://%s:%d",
                 cfg.get("node", "moniker"), self.chain_id, chain.last_height, host,
                 self.rpc.port)

    def _load_chain_state(self) -> ChainState:
        assert self.db is not None
        stored = self.db.get_meta(META_CHAIN_STATE)
        if stored is not None:
            chain = ChainState.decode(stored)
            if chain.last_height != self.db.last_committed_height():
                raise AppFault("consensus chain state and block store disagree")
            return chain
        params = self.genesis.params
        validators = ValidatorSet(Validator(pk, power) for pk, power in params.validators)
        return ChainState.genesis(self.chain_id, validators, self.genesis.genesis_time_ms,
                                  self.genesis.initial_height)

    def _wal_events(self, chain: ChainState) -> list:
        height, records = self.wal.records_since_last_marker()
        if height != chain.next_height:
            return []  # the WAL holds a height that is already committed: stale
        events = []
        for record in records:
            try:
                events.append(decode_event(record))
            except ConsensusWALError as exc:
                log.warning("ignoring the rest of the consensus WAL: %s", exc)
                break
        return events

    def known_tx(self, tx_hash: bytes) -> vm.Tx | None:
        if not hasattr(self, "mempool"):
            return None
        return self.mempool.get(tx_hash) or self.verifier.get(tx_hash)

    def check_record(self, tx_hash: bytes) -> HandlerRecord | None:
        return self.mempool.record(tx_hash) if hasattr(self, "mempool") else None

    # --- commit ---------------------------------------------------------------------------

    def _on_commit(self, committed: CommittedBlock) -> None:
        block = committed.block
        self.last_commit_time_ms = now_ms()
        hashes = [tx.hash for tx in committed.txs]
        execution = committed.execution
        self.verifier.discard(hashes)
        self.mempool.update(self.db.state, block.height, block.header.time_ms, hashes,
                            only_txs_changed_state=not execution.events
                            and not execution.validator_updates)
        for index, (tx, result) in enumerate(zip(committed.txs, committed.execution.results,
                                                 strict=True)):
            for future in self.events.waiters.pop(tx.hash, []):
                if not future.done():
                    future.set_result((block.height, index, result))
        self.net.committed(block.height)
        for listener in list(self.events.commit_listeners):
            try:
                listener(committed)
            except Exception:  # a broken listener must never stop consensus
                log.exception("commit listener %r failed", listener)
        self.events.new_block.set()
        self.events.new_block = asyncio.Event()
        log.info("committed block %d (%d txs) app_hash=%s", block.height, len(block.txs),
                 committed.execution.app_hash.hex()[:16])

    # --- txs ------------------------------------------------------------------------------

    def submit(self, raw: bytes, tx_hash: bytes | None = None) -> vm.Tx:
        """Stateless + stateful checks and admission. Raises MempoolError. `tx_hash`, when
        the caller has it already, spares hashing `raw` again."""
        tx_hash = tx_hash or sha256(raw)
        self.mempool.refuse_known(tx_hash)  # before any decoding: gossip brings many copies
        tx = self.verifier.take(tx_hash) or self.mempool.decode(raw)
        added = self.mempool.add(tx)
        if added:
            self.driver.txs_available()
            self.net.tx_added(added)
        return tx

    def wait_for_tx(self, tx_hash: bytes) -> asyncio.Future:
        if self.stopping:
            raise _shutting_down(tx_hash)
        future = asyncio.get_running_loop().create_future()
        self.events.waiters.setdefault(tx_hash, []).append(future)
        return future

    def forget_waiter(self, tx_hash: bytes, future: asyncio.Future) -> None:
        """Drop a waiter that will not be awaited (refused tx, timeout), so a flood of
        refused broadcast_tx_commit calls cannot grow `events.waiters` without bound."""
        futures = self.events.waiters.get(tx_hash)
        if futures is not None and future in futures:
            futures.remove(future)
            if not futures:
                del self.events.waiters[tx_hash]

    @property
    def validator_address(self) -> bytes:
        return address_from_pubkey(self.validator_key.public_key)

    # --- stop -----------------------------------------------------------------------------

    async def stop(self) -> None:
        # Answer the broadcast_tx_commit calls still waiting first: the RPC server's stop
        # waits for in-flight requests, which would hold SIGTERM up to commit_timeout_ms.
        self.stopping = True
        for tx_hash, futures in self.events.waiters.items():
            for future in futures:
                if not future.done():
                    future.set_exception(_shutting_down(tx_hash))
        if self.rpc is not None:
            await self.rpc.stop()
            self.rpc = None
        if hasattr(self, "driver"):
            self.driver.stop()
        self.net.stop()
        if self.network is not None:
            await self.network.stop()
            self.network = None
        for futures in self.events.waiters.values():
            for future in futures:
                future.cancel()
        self.events.waiters.clear()
        if hasattr(self, "verifier"):
            await self.verifier.aclose()
        if hasattr(self, "wal"):
            self.wal.close()
        if self.db is not None:
            self.db.close()
            self.db = None
        self.stopped.set()


def leveldb_options(cfg: Config) -> dict[str, Any]:
    compression = cfg.get("storage", "compression")
    return {"cache_bytes": cfg.get("storage", "cache_bytes"),
            "compression": None if compression == "none" else compression}


def _shutting_down(tx_hash: bytes) -> RPCError:
    return RPCError(NODE_NOT_READY, "node is shutting down; the tx may still be committed",
                    {"hash": tx_hash.hex()})


# A node allocates and frees millions of small objects a second (txs, overlays, results),
# nearly all freed by reference counting. The default gen-0 threshold (700) ran the cyclic
# collector thousands of times a second, and each full collection walked the whole heap.
# At 50,000 a validator under load still spent ~7% of its CPU in gen-0 and gen-1 passes
# (2.9 s per node in a 4-validator benchmark run, 0.95 s at 200,000; the longest pause
# went from 0.2 to 0.4 s, RSS up 3%).
GC_THRESHOLDS = (200_000, 20, 20)


def tune_gc() -> None:
    """Collect less often, and never again walk what startup built (config, genesis,
    modules): `gc.freeze` moves it out of the collector's generations."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def run_node(home: Path) -> int:
    """Run until SIGTERM/SIGINT (or an internal fault). Returns the exit code."""
    node = Node(home)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await node.start()
    except BaseException:
        await node.stop()  # release the data dir and whatever listener did bind
        raise
    tune_gc()
    fault_watch = asyncio.create_task(_watch_fault(node, stop))
    try:
        await stop.wait()
    finally:
        fault_watch.cancel()
        log.info("shutting down")
        await node.stop()
    return 1 if node.driver.fault is not None else 0


async def _watch_fault(node: Node, stop: asyncio.Event) -> None:
    while node.driver.fault is None:
        await asyncio.sleep(0.5)
    stop.set()
