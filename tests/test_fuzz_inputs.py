"""Hypothesis fuzzing of the node's untrusted inputs: only the module's own error escapes.

- p2p channel payloads through NodeNetworkHandler.on_message (CONSENSUS, TXS, BLOCKSYNC)
  of a live in-process node with a fake network: never raises; garbage punishes the peer;
  the node keeps committing.
- tx envelopes: commerce_vm.decode_tx raises only VMError (structured envelopes with
  random fields; test_vm_bad_input covers truncation and encodings).
- JSON-RPC batches of random methods and params, up to and past the batch limit, through
  the real aiohttp app (test_rpc_node fuzzes single bodies).
- config: config_from_dict on random tables, load_config on random TOML text; genesis:
  Genesis.from_dict on mutated genesis documents, load_genesis on random bytes.
- memory: tracemalloc's peak over a long random decoding run stays bounded.
"""

from __future__ import annotations

import asyncio
import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import commerce_vm as vm
from core.encoding import encode
from node.config import ConfigError, config_from_dict, load_config
from node.genesis import Genesis, GenesisError, load_genesis
from node.network import BLOCKSYNC, CONSENSUS, TXS
from tests.node_fixtures import live_node, node_factory  # noqa: F401

FAST = settings(max_examples=200, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))

# Values the canonical encoding accepts: so payloads get past decode() into the handlers.
ENCODABLE = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.binary(max_size=40)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=6), max_leaves=25)


def _encoded(value: Any) -> bytes:
    return encode(value)


# --- p2p channel payloads ----------------------------------------------------------------------

class FakeNetwork:
    def __init__(self) -> None:
        self.punished: list[tuple[bytes, str, int]] = []
        self.sent = 0

    def send(self, peer_id: bytes, channel: int, payload: bytes) -> None:
        self.sent += 1

    def broadcast(self, channel: int, payload: bytes, exclude: bytes | None = None) -> None:
        self.sent += 1

    def punish(self, peer_id: bytes, reason: str, score: int) -> None:
        assert "\n" not in reason
        self.punished.append((peer_id, reason, score))


PEER = b"\x01" * 20
SYNC_MESSAGES = st.tuples(st.integers(0, 6), st.lists(ENCODABLE, max_size=4)).map(
    lambda t: _encoded([t[0], *t[1]]))
PAYLOADS = st.one_of(
    st.tuples(st.just(CONSENSUS), st.binary(max_size=300) | ENCODABLE.map(_encoded)
              | st.tuples(st.integers(0, 5), st.lists(ENCODABLE, max_size=12)).map(
                  lambda t: _encoded([t[0], *t[1]]))),
    st.tuples(st.just(TXS), st.binary(max_size=200) | ENCODABLE.map(_encoded)
              | st.lists(st.binary(max_size=200), max_size=5).map(_encoded)),
    st.tuples(st.just(BLOCKSYNC), st.binary(max_size=200) | SYNC_MESSAGES),
    st.tuples(st.integers(0, 9), st.binary(max_size=50)),
)


async def test_channel_payloads_never_raise(live_node) -> None:  # noqa: F811
    node = live_node.node
    fake = FakeNetwork()
    node.network = fake
    handler = node.net
    loop = asyncio.get_running_loop()

    async def deliver(channel: int, payload: bytes) -> None:
        if PEER not in handler.peers:  # a punished peer would be dropped; reconnect it
            handler.on_peer_connected(PEER)
        handler.on_message(PEER, channel, payload)

    @FAST
    @given(PAYLOADS)
    def one(message: tuple[int, bytes]) -> None:
        asyncio.run_coroutine_threadsafe(deliver(*message), loop).result(10)

    start = node.engine.chain.last_height
    try:
        await asyncio.to_thread(one)
    finally:
        node.network = None
        handler.stop()
    assert fake.punished, "no garbage was ever punished"
    assert node.driver.fault is None and not node.driver.stopped
    await live_node.wait_height(start + 2)


# --- txs ---------------------------------------------------------------------------------------

ENVELOPES = st.lists(ENCODABLE, min_size=7, max_size=7).map(_encoded) | \
    st.tuples(st.sampled_from(["chainmerce-test", "x"]), st.integers(-1, 20),
              st.binary(min_size=32, max_size=32), st.integers(-1, 2**64 - 1),
              st.integers(-1, 2**64 - 1), st.lists(ENCODABLE, max_size=8),
              st.binary(min_size=64, max_size=64)).map(lambda t: _encoded(list(t)))


@FAST
@given(ENVELOPES)
def test_tx_decoding_raises_only_vm_errors(raw: bytes) -> None:
    try:
        tx = vm.decode_tx(raw, "chainmerce-test", 65536)
    except vm.VMError as err:
        assert isinstance(err.code, int) and err.name
        return
    assert tx.raw == raw


# --- JSON-RPC batches --------------------------------------------------------------------------

METHODS = ["status", "health", "block", "blockchain", "commit", "validators", "tx", "tx_search",
           "broadcast_tx_sync", "broadcast_tx_async", "unconfirmed_txs", "num_unconfirmed_txs",
           "account", "listing", "listings", "order", "orders", "reviews", "reputation",
           "provenance", "rewards_pool", "params", "genesis", "no_such_method", "rpc.discover",
           "net_info", "broadcast_tx_commit"]
PARAMS = st.dictionaries(
    st.sampled_from(["height", "hash", "tx", "address", "limit", "cursor", "id", "min_height",
                     "max_height", "prove", "merchant", "buyer"]),
    st.none() | st.integers(-2, 2**66) | st.text(max_size=12) | st.booleans()
    | st.sampled_from(["00" * 32, "cm1" + "q" * 38, "zz", ""]) | st.binary(max_size=60).map(
        bytes.hex), max_size=3)
REQUEST = st.fixed_dictionaries({"jsonrpc": st.just("2.0"), "method": st.sampled_from(METHODS),
                                 "id": st.integers(0, 10**6)},
                                optional={"params": PARAMS})
BATCHES = st.lists(REQUEST, min_size=1, max_size=70)


async def test_random_batches_through_the_real_app(live_node) -> None:  # noqa: F811
    live = live_node
    loop = asyncio.get_running_loop()
    limit = live.node.config.get("rpc", "max_batch_requests")

    @settings(max_examples=60, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(BATCHES)
    def one(batch: list[dict[str, Any]]) -> None:
        # broadcast_tx_commit would wait for a commit of garbage: give it none to wait for
        for request in batch:
            if request["method"] == "broadcast_tx_commit":
                request.setdefault("params", {})["tx"] = "00"
        status, reply = asyncio.run_coroutine_threadsafe(
            live.post(json.dumps(batch)), loop).result(30)
        assert status == 200, (status, reply)
        if len(batch) > limit:
            assert isinstance(reply, dict) and reply["error"]["code"] == -32600, reply
            return
        assert isinstance(reply, list) and len(reply) == len(batch)
        for item in reply:
            assert ("result" in item) != ("error" in item), item
            if "error" in item:
                assert item["error"]["code"] != -32603, item  # never an internal error

    await asyncio.to_thread(one)
    assert (await live.rpc("health")) is not None


# --- config and genesis -------------------------------------------------------------------------

SECTIONS = st.sampled_from(["node", "storage", "rpc", "p2p", "consensus", "mempool", "bogus"])
KEYS = st.sampled_from(["moniker", "log_level", "backend", "listen", "max_body_bytes",
                        "persistent_peers", "timeout_commit_ms", "max_txs", "nope"])
TOML_VALUES = st.sampled_from(['"x"', "1", "-1", "true", "[]", '["a"]', "[1]", "1.5",
                               '"127.0.0.1:1"', '":99999"', "{a = 1}", '"debug"'])


@FAST
@given(st.dictionaries(SECTIONS, st.dictionaries(KEYS, ENCODABLE | st.floats(), max_size=3)
                       | ENCODABLE, max_size=4))
def test_config_from_dict_raises_only_config_errors(data: dict[str, Any]) -> None:
    try:
        config_from_dict(data)
    except ConfigError as exc:
        assert "\n" not in str(exc)


@FAST
@given(st.lists(st.tuples(SECTIONS, KEYS, TOML_VALUES), max_size=5) | st.text(max_size=80))
def test_load_config_on_random_toml(tmp_path_factory, doc) -> None:
    if isinstance(doc, list):
        text = "".join(f"[{s}]\n{k} = {v}\n" for s, k, v in doc)
    else:
        text = doc
    path = tmp_path_factory.mktemp("cfg") / "config.toml"
    path.write_text(text, encoding="utf-8")
    try:
        load_config(path)
    except ConfigError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)


@pytest.fixture(scope="module")
def good_genesis() -> dict[str, Any]:
    from core.keys import PrivateKey
    from node.home import dev_params

    key = PrivateKey(b"\x05" * 32)
    params = dev_params("chainmerce-fuzz", [(key.public_key, 10)], {"arbiter": b"\x07" * 20})
    return Genesis(1_790_000_000_000, 1, params).to_dict()


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=20)
    | st.floats(allow_nan=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4), max_leaves=15)


@FAST
@given(st.data())
def test_genesis_from_dict_raises_only_genesis_errors(good_genesis, data) -> None:
    doc = json.loads(json.dumps(good_genesis))
    target = doc if data.draw(st.booleans()) else doc["params"]
    key = data.draw(st.sampled_from(sorted(target)) | st.text(max_size=6))
    target[key] = data.draw(JSON_VALUES)
    try:
        Genesis.from_dict(doc)
    except GenesisError as exc:  # (an unknown key is echoed as is; the CLI joins lines)
        assert str(exc).startswith("genesis: ")


@FAST
@given(st.binary(max_size=300) | JSON_VALUES.map(lambda v: json.dumps(v).encode()))
def test_load_genesis_on_random_bytes(tmp_path_factory, raw: bytes) -> None:
    path: Path = tmp_path_factory.mktemp("gen") / "genesis.json"
    path.write_bytes(raw)
    with pytest.raises(GenesisError):
        load_genesis(path)


# --- memory ------------------------------------------------------------------------------------

def test_random_decoding_run_has_bounded_memory() -> None:
    """Thousands of random envelopes, configs and genesis documents: tracemalloc's peak
    stays small (nothing is retained between inputs)."""
    import random

    rng = random.Random(5)
    tracemalloc.start()
    try:
        for i in range(1500):
            raw = rng.randbytes(rng.randint(0, 400))
            if i % 3 == 0:
                raw = encode(["chainmerce-test", rng.randint(0, 20), rng.randbytes(32), i, 10,
                              [rng.randbytes(20), rng.randint(0, 99)], rng.randbytes(64)])
            try:
                vm.decode_tx(raw, "chainmerce-test", 65536)
            except vm.VMError:
                pass
            try:
                config_from_dict({"rpc": {"max_body_bytes": rng.randint(-5, 5)}})
            except ConfigError:
                pass
            try:
                Genesis.from_dict({"genesis_time_ms": i, "params": {"chain_id": raw.hex()[:9]}})
            except GenesisError:
                pass
            if i == 200:
                tracemalloc.reset_peak()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, f"peak {peak >> 10} KiB"
