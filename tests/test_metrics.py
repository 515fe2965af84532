"""Prometheus metrics on a live node (per-node registry, so two nodes in one process do
not collide), missed blocks counted from last_commit, and health turning false on a fault,
a stall or catching up."""

from __future__ import annotations

from types import SimpleNamespace

from prometheus_client.parser import text_string_to_metric_families

from commerce_vm import txtypes as T
from consensus.validators import Validator, ValidatorSet
from core.address import address_from_pubkey, address_to_text
from core.keys import PrivateKey
from node.metrics import NodeMetrics, missed_validators
from node.network import PeerState
from node.rpc.server import DISPATCHER
from tests.node_fixtures import LiveNode, live_node, node_factory  # noqa: F401

LISTING = [0, "Tea bowl", 250, 5, 0, 0, "Kyoto", b""]


async def scrape(live: LiveNode) -> dict[str, list]:
    async with live.session.get(live.url + "metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def value(samples: dict[str, list], name: str, **labels: str) -> float:
    found = [s.value for s in samples[name] if all(s.labels.get(k) == v
                                                   for k, v in labels.items())]
    assert len(found) == 1, (name, labels, samples.get(name))
    return found[0]


async def test_metrics_of_a_live_node(node_factory):  # noqa: F811
    live = await node_factory()
    other = await node_factory("other")  # a second node in the same process
    await live.wait_height(2)
    committed = await live.rpc("broadcast_tx_commit", tx=live.sign("merchant", T.LIST, 0,
                                                                     LISTING))
    await live.rpc("status")
    samples = await scrape(live)
    assert value(samples, "chainmerce_height") >= committed["height"]
    assert value(samples, "chainmerce_committed_txs_total") == 1
    assert value(samples, "chainmerce_block_txs_count") >= 2
    assert value(samples, "chainmerce_block_interval_seconds_count") >= 1
    assert value(samples, "chainmerce_mempool_txs") == len(live.node.mempool)
    assert value(samples, "chainmerce_mempool_bytes") == live.node.mempool.size_bytes
    assert value(samples, "chainmerce_peers") == 0
    assert value(samples, "chainmerce_sync_catching_up") == 0
    assert value(samples, "chainmerce_sync_target_height") >= committed["height"]
    assert value(samples, "chainmerce_rpc_request_duration_seconds_count", method="status") == 1
    assert value(samples, "chainmerce_rpc_request_duration_seconds_count",
                 method="broadcast_tx_commit") == 1
    await live.call("no_such_method")
    await live.rpc("status")
    samples = await scrape(live)
    assert value(samples, "chainmerce_rpc_request_duration_seconds_count",
                 method="unknown") == 1
    assert value(samples, "chainmerce_rpc_request_duration_seconds_count", method="status") == 2
    assert "chainmerce_missed_blocks_total" not in samples  # one validator, never missing
    # the other node's registry is its own
    other_samples = await scrape(other)
    assert "chainmerce_committed_txs_total" in other_samples
    assert value(other_samples, "chainmerce_committed_txs_total") == 0


def test_missed_blocks_are_the_validators_absent_from_last_commit():
    keys = [PrivateKey(bytes([i]) * 32) for i in range(1, 4)]
    validators = ValidatorSet(Validator(k.public_key, 10) for k in keys)
    node = SimpleNamespace(engine=SimpleNamespace(status=(5, 0, None), chain=SimpleNamespace(
        last_height=5, validators=SimpleNamespace(at=lambda h: validators))),
        net=SimpleNamespace(peers={}, catching_up=False, synced_blocks=0))
    signed = [validators.validators[i] for i in (0, 2)]
    commit = SimpleNamespace(height=4, signatures=[
        SimpleNamespace(validator_index=validators.index_of(v.pubkey)) for v in signed])
    header = SimpleNamespace(height=5, time_ms=5000)
    committed = SimpleNamespace(block=SimpleNamespace(header=header, txs=(), last_commit=commit))
    absent = address_to_text(address_from_pubkey(validators.validators[1].pubkey))
    assert missed_validators(node, committed) == [absent]
    metrics = NodeMetrics(node)
    metrics.on_commit(committed)
    metrics.on_commit(committed)
    assert metrics.registry.get_sample_value("chainmerce_missed_blocks_total",
                                             {"validator": absent}) == 2
    first = SimpleNamespace(block=SimpleNamespace(header=header, txs=(), last_commit=None))
    assert missed_validators(node, first) == []


async def test_health_is_false_when_the_node_is_not_progressing(live_node: LiveNode):  # noqa: F811
    node = live_node.node
    dispatcher = node.rpc.app[DISPATCHER]
    healthy = await dispatcher.call("health", {})
    assert healthy["healthy"] is True and healthy["stalled"] is False
    assert {"height", "seconds_since_last_commit", "fault", "catching_up"} <= set(healthy)

    node.last_commit_time_ms -= 31_000  # no block for longer than health_stall_ms
    stalled = await dispatcher.call("health", {})
    assert stalled["healthy"] is False and stalled["stalled"] is True

    node.net.peers[b"peer"] = PeerState()
    node.net.peers[b"peer"].height = node.engine.chain.last_height + 50
    try:
        behind = await dispatcher.call("health", {})
    finally:
        del node.net.peers[b"peer"]
    assert behind["healthy"] is False and behind["catching_up"] is True

    node.driver.fault = RuntimeError("app hash mismatch")
    try:
        faulty = await dispatcher.call("health", {})
    finally:
        node.driver.fault = None
    assert faulty["healthy"] is False and "app hash" in faulty["fault"]
