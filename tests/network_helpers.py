"""A multi-process network harness for the end-to-end network tests.

`LocalTestnet.build(tmp_path, validators=4, full_nodes=1)` writes a testnet with
node.testnet.generate_testnet on free loopback ports; each node is an e2e_helpers.NodeHome,
so it is started, stopped (SIGTERM) and killed (kill -9) as a real `chainmerce start`
subprocess with its log in <home>/node.log. The harness signs transfers with the dev keys'
seeds (from the keyring JSON), submits them over JSON-RPC to any node, and reads heights,
block hashes and app hashes over RPC to check that every node holds the same chain.

Use the `testnets` fixture: every node of every testnet registered there is killed at
teardown, so a failing test never leaves processes behind. `FakePeer` runs p2p's Network
in a thread of the test process to play a misbehaving peer.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from commerce_vm import sign_tx
from commerce_vm import txtypes as T
from core.address import address_from_text
from core.keys import PrivateKey
from node.client import Client, ClientError
from node.testnet import TestnetManifest, generate_testnet
from tests.e2e_helpers import NodeHome, free_port

TRANSFER = T.TYPE_CODES["transfer"]
DEV_NAMES = ("merchant", "buyer", "arbiter")

# Blocks as fast as a 2-core machine running 4-5 nodes allows: for tests that need many
# heights. Round timeouts stay generous so a slow moment costs a round, not a stall.
FAST_NETWORK = {"timeout_commit_ms": 15, "empty_block_interval_ms": 15,
                "timeout_propose_ms": 1500, "timeout_prevote_ms": 500,
                "timeout_precommit_ms": 500}


def network_available() -> tuple[bool, str]:
    """Whether the node has p2p wiring and p2p has its Network (issue 5)."""
    try:
        import p2p
        from node.node import Node
    except ImportError as exc:  # pragma: no cover - depends on the tree
        return False, f"cannot import: {exc}"
    if not hasattr(Node, "network"):
        return False, "node.node.Node has no p2p wiring yet (no `network` attribute)"
    if not hasattr(p2p, "Network"):
        return False, "p2p.Network is not written yet"
    return True, ""


def distinct_free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def wait_until(predicate: Callable[[], Any], timeout: float, what: str,
               interval: float = 0.1, details: Callable[[], str] = lambda: "") -> Any:
    """Poll until `predicate()` is truthy (its value is returned) or fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except ClientError:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{details()}")
        time.sleep(interval)


@dataclass
class LocalTestnet:
    root: Path
    manifest: TestnetManifest
    nodes: list[NodeHome]
    nonces: dict[str, int] = field(default_factory=dict)

    @classmethod
    def build(cls, root: Path, validators: int, full_nodes: int = 0, *,
              chain_id: str = "chainmerce-net", consensus: dict[str, int] | None = None,
              ) -> LocalTestnet:
        count = validators + full_nodes
        flat = distinct_free_ports(2 * count)
        ports = [(flat[2 * i], flat[2 * i + 1]) for i in range(count)]
        manifest = generate_testnet(root, validators, full_nodes, chain_id=chain_id,
                                    ports=ports, consensus=consensus)
        nodes = [NodeHome(manifest.home(n), n.rpc_port, chain_id, dict(manifest.dev_accounts))
                 for n in manifest.nodes]
        return cls(root, manifest, nodes)

    # --- processes ------------------------------------------------------------------------

    def indices(self, which: list[int] | None) -> list[int]:
        return list(range(len(self.nodes))) if which is None else list(which)

    def start(self, which: list[int] | None = None, min_height: int = 0,
              timeout: float = 40.0) -> None:
        """Start nodes and wait until each answers RPC (and has min_height blocks)."""
        chosen = self.indices(which)
        for i in chosen:
            self.nodes[i].start(wait=False)
        for i in chosen:
            self.nodes[i].wait_ready(min_height=min_height, timeout=timeout)

    def stop(self, i: int) -> int:
        return self.nodes[i].stop()

    def kill(self, i: int) -> None:
        self.nodes[i].kill()

    def kill_all(self) -> None:
        for home in self.nodes:
            home.kill()

    def running(self, i: int) -> bool:
        proc = self.nodes[i].proc
        return proc is not None and proc.poll() is None

    # --- RPC ------------------------------------------------------------------------------

    def client(self, i: int, timeout: float = 10.0) -> Client:
        return self.nodes[i].client(timeout=timeout)

    def call(self, i: int, method: str, **params: Any) -> Any:
        return self.client(i).call(method, **params)

    def height(self, i: int) -> int:
        return int(self.call(i, "status")["sync_info"]["latest_block_height"])

    def heights(self, which: list[int] | None = None) -> dict[int, int]:
        return {i: self.height(i) for i in self.indices(which)}

    def peers(self, i: int) -> list[dict[str, Any]]:
        return self.call(i, "net_info")["peers"]

    def logs(self, which: list[int] | None = None, lines: int = 15) -> str:
        return "\n".join(f"--- node{i} ---\n{self.nodes[i].log_tail(lines)}"
                         for i in self.indices(which))

    def wait_height(self, height: int, which: list[int] | None = None,
                    timeout: float = 60.0) -> dict[int, int]:
        """Wait until every chosen node has committed `height`."""
        chosen = self.indices(which)

        def reached() -> dict[int, int] | None:
            heights = self.heights(chosen)
            return heights if min(heights.values()) >= height else None

        return wait_until(reached, timeout, f"height {height} on nodes {chosen}",
                          details=lambda: f"{self._safe_heights(chosen)}\n{self.logs(chosen)}")

    def wait_connected(self, which: list[int] | None = None, peers: int | None = None,
                       timeout: float = 30.0) -> None:
        """Wait until each chosen node has `peers` peers (default: all other chosen nodes)."""
        chosen = self.indices(which)
        want = len(chosen) - 1 if peers is None else peers
        wait_until(lambda: all(len(self.peers(i)) >= want for i in chosen), timeout,
                   f"{want} peers on nodes {chosen}",
                   details=lambda: str({i: len(self.peers(i)) for i in chosen}))

    def _safe_heights(self, chosen: list[int]) -> str:
        out = {}
        for i in chosen:
            try:
                out[i] = self.height(i)
            except (ClientError, KeyError):
                out[i] = None
        return f"heights: {out}"

    # --- txs ------------------------------------------------------------------------------

    def key(self, name: str) -> PrivateKey:
        return PrivateKey(self.nodes[0].seed(name))

    def next_nonce(self, sender: str, via: int = 0) -> int:
        if sender not in self.nonces:
            address = self.manifest.dev_accounts[sender]
            self.nonces[sender] = self.call(via, "account", address=address)["next_nonce"]
        nonce = self.nonces[sender]
        self.nonces[sender] = nonce + 1
        return nonce

    def transfer(self, sender: str, to: str, amount: int, *, via: int = 0,
                 fee: int = 10) -> bytes:
        """A signed transfer between dev accounts with the sender's next nonce."""
        nonce = self.next_nonce(sender, via)
        return sign_tx(self.key(sender), self.manifest.chain_id, TRANSFER, nonce, fee,
                       [address_from_text(self.manifest.dev_accounts[to]), amount])

    def submit(self, i: int, raw: bytes) -> str:
        """broadcast_tx_sync to node i: the tx hash (hex)."""
        answer = self.call(i, "broadcast_tx_sync", tx=raw.hex())
        assert answer["code"] == 0, answer
        return answer["hash"]

    def submit_commit(self, i: int, raw: bytes) -> dict[str, Any]:
        return self.client(i, timeout=60.0).call("broadcast_tx_commit", tx=raw.hex())

    def tx_height(self, i: int, tx_hash: str) -> int | None:
        try:
            return int(self.call(i, "tx", hash=tx_hash)["height"])
        except ClientError:
            return None

    def wait_txs_committed(self, tx_hashes: list[str], which: list[int] | None = None,
                           timeout: float = 60.0) -> None:
        chosen = self.indices(which)

        def all_there() -> bool:
            return all(self.tx_height(i, h) is not None for i in chosen for h in tx_hashes)

        wait_until(all_there, timeout, f"{len(tx_hashes)} txs committed on nodes {chosen}",
                   interval=0.2, details=lambda: self.logs(chosen))

    # --- chain comparison -----------------------------------------------------------------

    def headers(self, i: int, low: int, high: int) -> dict[int, dict[str, Any]]:
        """Headers low..high of node i, 20 per `blockchain` call."""
        client = self.client(i, timeout=20.0)
        out: dict[int, dict[str, Any]] = {}
        top = high
        while top >= low:
            page = client.call("blockchain", min_height=max(low, top - 19), max_height=top)
            for header in page["headers"]:
                out[int(header["height"])] = header
            top -= 20
        assert sorted(out) == list(range(low, high + 1)), f"node{i} skipped heights"
        return out

    def assert_same_chain(self, which: list[int] | None = None,
                          up_to: int | None = None) -> int:
        """Every chosen node has identical block hashes and app hashes at every height
        from 1 to the lowest tip (or up_to); blocks link. Returns the height compared."""
        chosen = self.indices(which)
        top = min(self.heights(chosen).values()) if up_to is None else up_to
        assert top >= 1, "no blocks to compare"
        reference = self.headers(chosen[0], 1, top)
        for h in range(2, top + 1):
            assert reference[h]["prev_hash"] == reference[h - 1]["hash"], f"bad link at {h}"
        for i in chosen[1:]:
            other = self.headers(i, 1, top)
            for h in range(1, top + 1):
                mine, theirs = reference[h], other[h]
                assert (mine["hash"], mine["app_hash"]) == (theirs["hash"], theirs["app_hash"]), \
                    f"node{chosen[0]} and node{i} differ at height {h}: {mine} vs {theirs}"
        return top


@pytest.fixture(name="testnets")
def testnets_fixture() -> Iterator[list[LocalTestnet]]:
    """Register each LocalTestnet here; every node process is killed at teardown."""
    nets: list[LocalTestnet] = []
    try:
        yield nets
    finally:
        for net in nets:
            net.kill_all()


# --- a misbehaving peer -------------------------------------------------------------------------


class _Recorder:
    """p2p MessageHandler that records connections (called on the peer's loop thread)."""

    def __init__(self) -> None:
        self.connected: list[bytes] = []
        self.disconnected: list[bytes] = []
        self.messages = 0

    def on_peer_connected(self, peer_id: bytes) -> None:
        self.connected.append(peer_id)

    def on_peer_disconnected(self, peer_id: bytes) -> None:
        self.disconnected.append(peer_id)

    def on_message(self, peer_id: bytes, channel: int, payload: bytes) -> None:
        self.messages += 1


class FakePeer:
    """A p2p Network with a fresh node key, run on its own event loop in a thread, that
    dials one node and lets the test send it whatever it likes."""

    def __init__(self, chain_id: str, target: str):
        self.chain_id = chain_id
        self.target = target
        self.key = PrivateKey.generate()
        self.handler = _Recorder()
        self.network: Any = None
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    @property
    def node_id(self) -> bytes:
        from p2p import node_id_of

        return node_id_of(self.key.public_key)

    def start(self) -> None:
        self.thread.start()
        self._run(self._start())

    async def _start(self) -> None:
        from p2p import Network, NetworkConfig

        config = NetworkConfig(listen="127.0.0.1:0", persistent_peers=(self.target,),
                               moniker="fake-peer")
        self.network = Network(self.key, self.chain_id, config, self.handler)
        await self.network.start()

    def _run(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def _call(self, fn: Callable[[], Any]) -> Any:
        async def wrapper() -> Any:
            return fn()
        return self._run(wrapper())

    def connected_peers(self) -> list[bytes]:
        return self._call(lambda: [p.peer_id for p in self.network.peers()])

    def send(self, peer_id: bytes, channel: int, payload: bytes) -> bool:
        return self._call(lambda: self.network.send(peer_id, channel, payload))

    def stop(self) -> None:
        try:
            if self.thread.is_alive() and self.network is not None:
                self._run(self.network.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
