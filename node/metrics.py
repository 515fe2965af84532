"""Prometheus metrics at /metrics, one CollectorRegistry per node (tests run several nodes in
one process, so the global registry is never used).

Updated from the commit listener (height, block interval, txs per block, missed blocks)
and read at scrape time (round, mempool, peers, sync), so nothing polls. The RPC latency
histogram wraps the dispatcher's `call`, labelled by method name (unknown names share one
label, so a client cannot grow the label set).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from core.address import address_from_pubkey, address_to_text
from node.app import CommittedBlock
from node.rpc.dispatcher import Dispatcher

if TYPE_CHECKING:
    from node.node import Node

NAMESPACE = "chainmerce"
INTERVAL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60)
TXS_BUCKETS = (0, 1, 10, 50, 100, 250, 500, 1000, 2500, 5000)
RPC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30)


class NodeMetrics:
    def __init__(self, node: Node):
        self.node = node
        self.registry = CollectorRegistry(auto_describe=True)
        r, ns = self.registry, NAMESPACE
        self.height = Gauge("height", "Height of the last committed block.", namespace=ns,
                            registry=r)
        self.round = Gauge("consensus_round", "Consensus round of the height in progress.",
                           namespace=ns, registry=r)
        self.round.set_function(lambda: node.engine.status[1] if hasattr(node, "engine") else 0)
        self.block_interval = Histogram(
            "block_interval_seconds", "Block time minus the previous block's time (BFT time).",
            namespace=ns, registry=r, buckets=INTERVAL_BUCKETS)
        self.block_txs = Histogram("block_txs", "Txs per committed block.", namespace=ns,
                                   registry=r, buckets=TXS_BUCKETS)
        self.txs_total = Counter("committed_txs", "Txs committed since start.", namespace=ns,
                                 registry=r)
        self.mempool_txs = Gauge("mempool_txs", "Txs waiting in the mempool.", namespace=ns,
                                 registry=r)
        self.mempool_txs.set_function(lambda: _mempool(node, len))
        self.mempool_bytes = Gauge("mempool_bytes", "Bytes of txs waiting in the mempool.",
                                   namespace=ns, registry=r)
        self.mempool_bytes.set_function(lambda: _mempool(node, lambda m: m.size_bytes))
        self.peers = Gauge("peers", "Connected p2p peers.", namespace=ns, registry=r)
        self.peers.set_function(lambda: len(node.net.peers))
        self.missed = Counter("missed_blocks", "Blocks whose commit lacks this validator's "
                              "signature (from the next block's last_commit).", ["validator"],
                              namespace=ns, registry=r)
        self.rpc_latency = Histogram("rpc_request_duration_seconds",
                                     "JSON-RPC call latency by method.", ["method"],
                                     namespace=ns, registry=r, buckets=RPC_BUCKETS)
        self.catching_up = Gauge("sync_catching_up", "1 while block sync is behind its peers.",
                                 namespace=ns, registry=r)
        self.catching_up.set_function(lambda: 1 if node.net.catching_up else 0)
        self.sync_target = Gauge("sync_target_height", "Highest height a peer announced "
                                 "(our own when no peer is ahead).", namespace=ns, registry=r)
        self.sync_target.set_function(self._sync_target)
        self.synced_blocks = Gauge("sync_blocks", "Blocks received by block sync since start.",
                                   namespace=ns, registry=r)
        self.synced_blocks.set_function(lambda: node.net.synced_blocks)
        self.ws_clients = Gauge("websocket_clients", "Connected WebSocket clients.",
                                namespace=ns, registry=r)
        self.ws_clients.set_function(
            lambda: len(getattr(getattr(node, "subscriptions", None), "clients", ())))
        self._last_time_ms: int | None = None

    def _sync_target(self) -> int:
        own = self.node.engine.chain.last_height if hasattr(self.node, "engine") else 0
        return max([own] + [p.height for p in self.node.net.peers.values()])

    def on_commit(self, committed: CommittedBlock) -> None:
        block = committed.block
        header = block.header
        self.height.set(header.height)
        self.block_txs.observe(len(block.txs))
        self.txs_total.inc(len(block.txs))
        if self._last_time_ms is not None and header.time_ms >= self._last_time_ms:
            self.block_interval.observe((header.time_ms - self._last_time_ms) / 1000)
        self._last_time_ms = header.time_ms
        for address in missed_validators(self.node, committed):
            self.missed.labels(address).inc()

    def instrument(self, dispatcher: Dispatcher) -> None:
        """Time every JSON-RPC call (HTTP and WebSocket) by method."""
        inner: Callable[[str, Any], Any] = dispatcher.call
        known = dispatcher.methods
        histogram = self.rpc_latency

        by_method: dict[str, Any] = {}  # labels() per call cost more than the observe

        async def timed_call(name: str, params: Any) -> Any:
            start = time.perf_counter()
            try:
                return await inner(name, params)
            finally:
                label = name if name in known else "unknown"
                child = by_method.get(label)
                if child is None:
                    child = by_method[label] = histogram.labels(label)
                child.observe(time.perf_counter() - start)

        dispatcher.call = timed_call  # type: ignore[method-assign]

    def render(self) -> bytes:
        return generate_latest(self.registry)


def missed_validators(node: Node, committed: CommittedBlock) -> list[str]:
    """Addresses of the validators of height H-1 absent from this block's last_commit."""
    block = committed.block
    commit = block.last_commit
    if commit is None:
        return []
    try:
        validators = node.engine.chain.validators.at(commit.height)
    except Exception:  # a history that no longer reaches that height: nothing to count
        return []
    signed = {s.validator_index for s in commit.signatures}
    return [address_to_text(address_from_pubkey(v.pubkey))
            for i, v in enumerate(validators.validators) if i not in signed]


def _mempool(node: Node, read: Callable[[Any], int]) -> int:
    mempool = getattr(node, "mempool", None)
    return 0 if mempool is None else read(mempool)


def register(d: Dispatcher, node: Node) -> None:
    metrics = NodeMetrics(node)
    node.metrics = metrics
    node.events.commit_listeners.append(metrics.on_commit)
    metrics.instrument(d)

    async def get_metrics(_request: web.Request) -> web.Response:
        # The collectors read the node's state: render on its loop.
        body = await d.on_node_loop(metrics.render)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def setup(app: web.Application) -> None:
        app.router.add_get("/metrics", get_metrics)

    node.http_setup.append(setup)
