"""Real loopback tests of Network: connections, broadcast, redial, bans, limits, PEX."""

from __future__ import annotations

import asyncio

import pytest

from p2p import Channel, Network, NetworkConfig, format_peer_address, node_id_of
from p2p.handshake import Handshake
from p2p.session import Outbox
from tests.test_p2p_support import CHAIN, Recorder, key, until

LOCAL = "127.0.0.1:0"


class Node:
    def __init__(self, n: int, **config):
        self.key = key(n)
        self.handler = Recorder()
        config.setdefault("listen", LOCAL)
        self.config = NetworkConfig(**config)
        self.net = Network(self.key, CHAIN, self.config, self.handler)

    @property
    def address(self) -> str:
        return format_peer_address(self.net.node_id, "127.0.0.1", self.net.listen_port)

    def peer_ids(self) -> set[bytes]:
        return {p.peer_id for p in self.net.peers()}


@pytest.fixture
async def nodes():
    started: list[Node] = []

    async def make(n: int, **config) -> Node:
        node = Node(n, **config)
        await node.net.start()
        started.append(node)
        return node

    yield make
    for node in started:
        await node.net.stop()


async def raw_connect(target: Node, n: int = 50):
    """A hand-driven client: handshake with the sans-IO object over a real socket."""
    reader, writer = await asyncio.open_connection("127.0.0.1", target.net.listen_port)
    hs = Handshake(key(n), CHAIN, initiator=True, expected_peer_id=target.net.node_id)
    writer.write(hs.start())
    while hs.result is None:
        data = await reader.read(4096)
        assert data, "closed during the handshake"
        out = hs.receive_data(data)
        if out:
            writer.write(out)
    await writer.drain()
    return reader, writer, hs.result.session


async def read_to_eof(reader: asyncio.StreamReader) -> None:
    while await reader.read(65536):
        pass


async def test_two_networks_connect_and_every_channel_round_trips(nodes):
    a = await nodes(1, moniker="alpha")
    b = await nodes(2, persistent_peers=(a.address,))
    await until(lambda: a.peer_ids() == {b.net.node_id} and b.peer_ids() == {a.net.node_id})
    assert b.net.peers()[0].outbound and not a.net.peers()[0].outbound
    assert b.net.peers()[0].moniker == "alpha"
    sent = [(int(c), b"msg-%d" % c) for c in (Channel.CONSENSUS, Channel.TXS, Channel.BLOCKSYNC)]
    for channel, payload in sent:
        assert b.net.send(a.net.node_id, channel, payload)
        assert a.net.send(b.net.node_id, channel, payload)
    await until(lambda: len(a.handler.messages) == 3 and len(b.handler.messages) == 3)
    assert [(c, p) for _, c, p in a.handler.messages] == sent  # in order, no PEX leaked
    assert {pid for pid, _, _ in a.handler.messages} == {b.net.node_id}
    info = a.net.peers()[0]
    assert info.messages_received >= 3 and info.bytes_received > 0 and info.score == 0
    assert not a.net.send(b"\x00" * 20, 1, b"nobody")
    with pytest.raises(ValueError):
        a.net.send(b.net.node_id, Channel.PEX, b"internal")


async def test_broadcast_reaches_every_peer_once_in_batches(nodes):
    a = await nodes(1)
    b = await nodes(2, persistent_peers=(a.address,))
    c = await nodes(3, persistent_peers=(a.address, b.address))
    await until(lambda: all(len(n.net.peers()) == 2 for n in (a, b, c)))
    payloads = [b"%05d" % i * 50 for i in range(2000)]  # 250-byte messages
    for payload in payloads:
        assert a.net.broadcast(Channel.TXS, payload) == 2
    assert a.net.broadcast(Channel.CONSENSUS, b"not to b", exclude=b.net.node_id) == 1
    await until(lambda: len(b.handler.messages) == 2000 and len(c.handler.messages) == 2001)
    assert [p for _, _, p in b.handler.messages] == payloads
    assert [p for _, _, p in c.handler.messages][-1] == b"not to b"
    await asyncio.sleep(0.1)
    assert len(b.handler.messages) == 2000  # nothing echoed or duplicated
    frames_bytes = next(p for p in a.net.peers() if p.peer_id == b.net.node_id).bytes_sent
    assert frames_bytes < 2000 * 250 * 1.1  # sealed in batches, not one frame per message


async def test_big_messages_cross_frames(nodes):
    a = await nodes(1)
    b = await nodes(2, persistent_peers=(a.address,), max_frame_bytes=64 * 1024)
    await until(lambda: a.peer_ids() and b.peer_ids())
    big = bytes(range(256)) * 8192  # 2 MiB, many frames at either side's limit
    assert a.net.send(b.net.node_id, Channel.BLOCKSYNC, big)
    await until(lambda: b.handler.messages)
    assert b.handler.messages[0][2] == big


async def test_persistent_peer_is_redialled_after_it_restarts(nodes):
    a = await nodes(1)
    port = a.net.listen_port
    b = await nodes(2, persistent_peers=(a.address,))
    await until(lambda: b.peer_ids() == {a.net.node_id})
    await a.net.stop()
    await until(lambda: not b.net.peers())
    a2 = await nodes(1, listen=f"127.0.0.1:{port}")
    await until(lambda: b.peer_ids() == {a2.net.node_id}, timeout=15)
    assert b.handler.connected.count(a.net.node_id) == 2
    assert b.handler.disconnected == [a.net.node_id]


async def test_dialling_a_peer_whose_id_differs_is_refused(nodes):
    a = await nodes(1)
    b = await nodes(2)
    wrong = node_id_of(key(9).public_key)
    assert not await b.net._dial(wrong, "127.0.0.1", a.net.listen_port)
    assert not a.net.peers() and not b.net.peers()
    assert await asyncio.wait_for(_dial_then_stop(b, a), 5)


async def _dial_then_stop(b: Node, a: Node) -> bool:
    task = asyncio.ensure_future(b.net._dial(a.net.node_id, "127.0.0.1", a.net.listen_port))
    await until(lambda: b.peer_ids() == {a.net.node_id})
    await b.net.stop()
    return await task


async def test_garbage_frames_get_a_peer_banned_until_the_ban_expires(nodes):
    a = await nodes(1, ban_seconds=1.0)
    reader, writer, session = await raw_connect(a)
    attacker = node_id_of(key(50).public_key)
    await until(lambda: a.peer_ids() == {attacker})
    writer.write(b"\x00\x00\x00\x20" + bytes(32))  # a frame that does not open
    await until(lambda: not a.net.peers())
    assert a.net.is_banned(attacker)
    await asyncio.wait_for(read_to_eof(reader), 5)  # a closed the connection
    writer.close()
    # while banned: the handshake completes but the connection is refused right after
    reader2, writer2, _ = await raw_connect(a)
    await asyncio.wait_for(read_to_eof(reader2), 5)
    assert attacker not in a.peer_ids()
    writer2.close()
    await until(lambda: not a.net.is_banned(attacker), timeout=5)
    _, writer3, _ = await raw_connect(a)
    await until(lambda: a.peer_ids() == {attacker})
    writer3.close()


async def test_unknown_channel_and_oversized_frame_ban_at_once(nodes):
    a = await nodes(1, max_frame_bytes=8192)
    _, writer, session = await raw_connect(a, 51)
    outbox = Outbox()
    outbox.push(9, b"what channel?")
    writer.write(session.seal(outbox.next_plaintext(4096)))
    await until(lambda: a.net.is_banned(node_id_of(key(51).public_key)))
    writer.close()
    _, writer, _ = await raw_connect(a, 52)
    writer.write((8193).to_bytes(4, "big"))  # just the prefix: refused before the body
    await until(lambda: a.net.is_banned(node_id_of(key(52).public_key)))
    writer.close()


async def test_punish_accumulates_then_bans_and_blocks_redial(nodes):
    a = await nodes(1, ban_seconds=60.0)
    b = await nodes(2, persistent_peers=(a.address,))
    await until(lambda: a.peer_ids() == {b.net.node_id})
    a.net.punish(b.net.node_id, "bad tx", 30)
    assert a.net.peers()[0].score <= -29
    assert not a.net.is_banned(b.net.node_id)
    a.net.punish(b.net.node_id, "bad signature", 100)
    assert a.net.is_banned(b.net.node_id) and not a.net.peers()
    assert a.handler.disconnected == [b.net.node_id]
    await asyncio.sleep(1.5)  # b keeps redialling; a refuses it every time
    assert not a.net.peers()


async def test_inbound_limit_is_enforced(nodes):
    a = await nodes(1, max_inbound=1)
    b = await nodes(2, persistent_peers=(a.address,))
    await until(lambda: len(a.net.peers()) == 1)
    c = await nodes(3)
    # c's handshake succeeds, then a closes the connection at once
    await asyncio.wait_for(c.net._dial(a.net.node_id, "127.0.0.1", a.net.listen_port), 5)
    assert a.peer_ids() == {b.net.node_id}
    assert not c.net.peers()


async def test_simultaneous_dials_leave_one_connection(nodes):
    a = await nodes(1)
    b = await nodes(2)
    tasks = [asyncio.ensure_future(a.net._dial(b.net.node_id, "127.0.0.1", b.net.listen_port)),
             asyncio.ensure_future(b.net._dial(a.net.node_id, "127.0.0.1", a.net.listen_port))]
    await until(lambda: len(a.net.peers()) == 1 and len(b.net.peers()) == 1)
    await asyncio.sleep(0.2)
    assert len(a.net.peers()) == 1 and len(b.net.peers()) == 1
    assert a.net.peers()[0].outbound != b.net.peers()[0].outbound
    for task in tasks:
        task.cancel()


async def test_pex_lets_c_find_a_through_b(nodes):
    a = await nodes(1)
    b = await nodes(2, persistent_peers=(a.address,))
    await until(lambda: b.peer_ids() == {a.net.node_id})
    c = await nodes(3, persistent_peers=(b.address,))
    await until(lambda: c.peer_ids() == {a.net.node_id, b.net.node_id})
    assert c.net.node_id in a.peer_ids()


async def test_seed_gives_addresses_and_is_dropped(nodes):
    a = await nodes(1)
    seed = await nodes(2, persistent_peers=(a.address,))
    await until(lambda: seed.peer_ids() == {a.net.node_id})
    c = await nodes(3, seeds=(seed.address,))
    await until(lambda: a.net.node_id in c.peer_ids())  # learned from the seed, dialled
    assert seed.net.node_id in c.handler.disconnected  # the seed connection was dropped


async def test_a_slow_reader_is_disconnected_instead_of_growing_memory(nodes):
    a = await nodes(1, send_queue_bytes=256 * 1024)
    reader, writer, _ = await raw_connect(a, 53)
    slow = node_id_of(key(53).public_key)
    await until(lambda: slow in a.peer_ids())
    payload = bytes(64 * 1024)
    for _ in range(2000):  # up to 128 MiB offered; the peer never reads
        if not a.net.send(slow, Channel.BLOCKSYNC, payload):
            break
        peer = a.net._peers.get(slow)
        assert peer is None or peer.outbox.queued_bytes <= 256 * 1024 + len(payload)
        await asyncio.sleep(0)
    assert slow not in a.peer_ids()
    assert not a.net.is_banned(slow)  # slow is not malicious: it may come back
    writer.close()
