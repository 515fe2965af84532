"""The node's network wiring (consensus gossip, tx gossip, block sync), with N nodes in one
process joined by an in-memory hub that stands in for the p2p transport."""

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

import commerce_vm as vm
from commerce_vm import txtypes as T
from consensus.messages import Vote, VoteType, encode_message
from core.address import address_from_pubkey
from node.genesis import Genesis
from node.home import Home, dev_params, init_home, read_key_file
from node.keystore import Keystore
from node.node import Node
from node.rpc.server import DISPATCHER

CHAIN_ID = "chainmerce-net"
FAST = {("consensus", "timeout_commit_ms"): 20, ("consensus", "empty_block_interval_ms"): 50,
        ("consensus", "timeout_propose_ms"): 400, ("consensus", "timeout_prevote_ms"): 200,
        ("consensus", "timeout_precommit_ms"): 200, ("storage", "backend"): "leveldb",
        ("rpc", "listen"): "127.0.0.1:0"}


@dataclass
class FakePeer:
    peer_id: bytes
    address: str = "127.0.0.1:0"
    outbound: bool = True
    moniker: str = ""
    connected_at: float = 0.0
    bytes_sent: int = 0
    bytes_received: int = 0
    messages_sent: int = 0
    messages_received: int = 0
    score: int = 0


class Hub:
    """Delivers messages between FakeNetworks in order, on the event loop."""

    def __init__(self):
        self.members: dict[bytes, FakeNetwork] = {}
        self.punished: list[tuple[bytes, bytes, str]] = []

    def link(self, a: "FakeNetwork", b: "FakeNetwork") -> None:
        a.connected.add(b.node_id)
        b.connected.add(a.node_id)
        a.handler.on_peer_connected(b.node_id)
        b.handler.on_peer_connected(a.node_id)


class FakeNetwork:
    def __init__(self, hub: Hub, node_id: bytes, handler):
        self.hub, self.node_id, self.handler = hub, node_id, handler
        self.connected: set[bytes] = set()
        self.banned: set[bytes] = set()
        self.listen_port = 0

    async def start(self):
        for other in list(self.hub.members.values()):
            self.hub.link(self, other)
        self.hub.members[self.node_id] = self

    async def stop(self):
        self.hub.members.pop(self.node_id, None)
        for peer_id in list(self.connected):
            self._drop(peer_id)

    def _drop(self, peer_id):
        other = self.hub.members.get(peer_id)
        self.connected.discard(peer_id)
        self.handler.on_peer_disconnected(peer_id)
        if other is not None and self.node_id in other.connected:
            other.connected.discard(self.node_id)
            other.handler.on_peer_disconnected(self.node_id)

    def send(self, peer_id, channel, payload):
        other = self.hub.members.get(peer_id)
        if peer_id not in self.connected or other is None:
            return False
        asyncio.get_running_loop().call_soon(other._deliver, self.node_id, channel, payload)
        return True

    def _deliver(self, sender, channel, payload):
        if sender in self.connected:
            self.handler.on_message(sender, channel, payload)

    def broadcast(self, channel, payload, exclude=None):
        return sum(self.send(p, channel, payload) for p in list(self.connected) if p != exclude)

    def peers(self):
        return [FakePeer(p) for p in sorted(self.connected)]

    def punish(self, peer_id, reason, points=10):
        self.hub.punished.append((self.node_id, peer_id, reason))
        if points >= 100:
            self.banned.add(peer_id)
            self._drop(peer_id)

    def is_banned(self, peer_id):
        return peer_id in self.banned


def make_homes(tmp: Path, n: int) -> list[Path]:
    homes = [tmp / f"node{i}" for i in range(n)]
    infos = [init_home(h, CHAIN_ID, dev=(i == 0), config_overrides=FAST)
             for i, h in enumerate(homes)]
    validators = [(bytes.fromhex(info["validator_pub_key"]), 10) for info in infos]
    accounts = {name: address_from_pubkey(Keystore(homes[0]).show(name).public_key)
                for name in infos[0]["dev_accounts"]}
    genesis = Genesis(1_700_000_000_000, 1, dev_params(CHAIN_ID, validators, accounts))
    for h in homes:
        Home(h).genesis_file.write_text(genesis.to_json())
    return homes


async def start(hub: Hub, home: Path) -> Node:
    def factory(node, handler):
        return FakeNetwork(hub, address_from_pubkey(read_key_file(
            Home(home).node_key_file).public_key), handler)

    node = Node(home, network_factory=factory)
    await node.start()
    return node


async def wait_until(predicate, timeout=20.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def block_hashes(node: Node, upto: int) -> list[bytes]:
    return [node.db.blocks.get_block(h) for h in range(1, upto + 1)]


@pytest.fixture
def hub():
    return Hub()


async def test_four_validators_agree_and_gossip_txs(tmp_path, hub):
    homes = make_homes(tmp_path, 4)
    nodes = [await start(hub, h) for h in homes]
    try:
        await wait_until(lambda: min(n.engine.chain.last_height for n in nodes) >= 3)
        merchant = Keystore(homes[0]).load("merchant", None)
        raw = vm.sign_tx(merchant, CHAIN_ID, T.LIST, 0, 10, [0, "mug", 100, 5, 0, 0, "Porto", b""])
        nodes[2].submit(raw)  # submitted to a node that may not be the proposer
        tx_hash = vm.decode_tx(raw, CHAIN_ID).hash
        await wait_until(lambda: all(n.db.txs.by_hash(tx_hash) for n in nodes))
        top = min(n.engine.chain.last_height for n in nodes)
        reference = block_hashes(nodes[0], top)
        assert all(block_hashes(n, top) == reference for n in nodes)
        assert len({n.db.state_meta().app_hash for n in nodes
                    if n.engine.chain.last_height == top}) <= 1
        assert all(len(n.network.peers()) == 3 for n in nodes)
    finally:
        for n in nodes:
            await n.stop()


async def test_a_stopped_validator_syncs_back_and_three_keep_going(tmp_path, hub):
    homes = make_homes(tmp_path, 4)
    nodes = [await start(hub, h) for h in homes]
    try:
        await wait_until(lambda: min(n.engine.chain.last_height for n in nodes) >= 2)
        await nodes[3].stop()
        stopped_at = nodes[3].engine.chain.last_height
        await wait_until(lambda: nodes[0].engine.chain.last_height >= stopped_at + 15)
        nodes[3] = await start(hub, homes[3])
        target = nodes[0].engine.chain.last_height
        await wait_until(lambda: nodes[3].engine.chain.last_height >= target)
        assert nodes[3].net.synced_blocks > 0  # it caught up by block sync
        assert block_hashes(nodes[3], target) == block_hashes(nodes[0], target)
    finally:
        for n in nodes:
            await n.stop()


async def test_two_of_four_stopped_halts_and_resumes(tmp_path, hub):
    homes = make_homes(tmp_path, 4)
    nodes = [await start(hub, h) for h in homes]
    try:
        await wait_until(lambda: min(n.engine.chain.last_height for n in nodes) >= 2)
        await nodes[2].stop()
        await nodes[3].stop()
        await asyncio.sleep(0.5)
        halted = nodes[0].engine.chain.last_height
        await asyncio.sleep(2.0)
        assert nodes[0].engine.chain.last_height <= halted + 1  # at most one in flight
        nodes[2] = await start(hub, homes[2])
        await wait_until(lambda: nodes[0].engine.chain.last_height >= halted + 3)
        top = min(nodes[i].engine.chain.last_height for i in (0, 1, 2))
        assert block_hashes(nodes[0], top) == block_hashes(nodes[1], top) == \
            block_hashes(nodes[2], top)
    finally:
        for n in nodes:
            if n.db is not None:
                await n.stop()


async def test_a_full_node_follows_and_a_bad_peer_is_punished(tmp_path, hub):
    homes = make_homes(tmp_path, 2)  # one validator's worth of power each
    full = tmp_path / "full"
    init_home(full, CHAIN_ID, dev=False, config_overrides=FAST)
    Home(full).genesis_file.write_text(Home(homes[0]).genesis_file.read_text())
    nodes = [await start(hub, h) for h in homes]
    try:
        await wait_until(lambda: nodes[0].engine.chain.last_height >= 10)
        follower = await start(hub, full)
        nodes.append(follower)
        assert follower.engine.my_index is None  # not in the set: it observes, never votes
        await wait_until(lambda: follower.engine.chain.last_height
                         >= nodes[0].engine.chain.last_height - 1)
        # a forged vote (valid shape, wrong signature) is punished and never counted
        attacker = FakeNetwork(hub, b"\xee" * 20, follower.net)
        hub.members[attacker.node_id] = attacker
        hub.link(attacker, hub.members[follower.network.node_id])
        height = follower.engine.height
        forged = Vote(VoteType.PREVOTE, height, 0, None, 1, 0, b"\x01" * 64)
        attacker.send(follower.network.node_id, 1, encode_message(forged))
        attacker.send(follower.network.node_id, 1, b"\xc1garbage")
        await asyncio.sleep(0.1)
        reasons = [r for _, who, r in hub.punished if who == attacker.node_id]
        assert any("invalid signature" in r for r in reasons)
        assert any("undecodable" in r for r in reasons)
        info = await nodes[0].rpc.app[DISPATCHER].call("net_info", {})
        assert info["n_peers"] == len(nodes[0].network.peers()) >= 2
        assert {p["node_id"] for p in info["peers"]} >= {follower.network.node_id.hex()}
        json.dumps(info)  # every field is plain JSON
    finally:
        for n in nodes:
            await n.stop()


class LyingPeer:
    """Claims a huge height, then has none of the blocks it is asked for."""

    def __init__(self):
        self.network = None
        self.requests = []

    def on_peer_connected(self, peer_id):
        pass

    def on_peer_disconnected(self, peer_id):
        pass

    def on_message(self, peer_id, channel, payload):
        from core.encoding import decode, encode

        message = decode(payload)
        if channel == 3 and message[0] == 3:  # SYNC_GET_BLOCK
            self.requests.append(message[1])
            self.network.send(peer_id, 3, encode([5, message[1]]))  # SYNC_NO_BLOCK


async def test_a_peer_claiming_blocks_it_cannot_deliver_loses_its_claim(tmp_path, hub):
    from core.encoding import encode

    homes = make_homes(tmp_path, 1)
    node = await start(hub, homes[0])
    try:
        await wait_until(lambda: node.engine.chain.last_height >= 2)
        liar = LyingPeer()
        liar.network = FakeNetwork(hub, b"\xdd" * 20, liar)
        hub.members[liar.network.node_id] = liar.network
        hub.link(liar.network, hub.members[node.network.node_id])
        liar.network.send(node.network.node_id, 3, encode([2, 1, 2**40]))  # SYNC_STATUS
        await wait_until(lambda: liar.requests)
        await wait_until(lambda: not node.net.catching_up, timeout=5)
        assert any("did not deliver" in r for _, who, r in hub.punished if who == b"\xdd" * 20)
        height = node.engine.chain.last_height
        await wait_until(lambda: node.engine.chain.last_height > height)  # still committing
    finally:
        await node.stop()
