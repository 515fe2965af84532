"""WebSocket subscriptions on a live in-process node: every event of 1,000 txs delivered
once and in order with gap-free sequence numbers, the order and listing streams, ordinary
calls over the socket, limits and bad params, and a client that never reads is dropped
while the node keeps committing."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import aiohttp
import pytest

from commerce_vm import txtypes as T
from core.address import address_from_text
from core.hashing import sha256
from node.rpc.errors import INVALID_PARAMS, INVALID_REQUEST, TOO_MANY_REQUESTS
from tests.node_fixtures import LiveNode, node_factory  # noqa: F401

LISTING = [0, "Tea bowl", 250, 5, 0, 0, "Kyoto", b""]


class Socket:
    """A JSON-RPC WebSocket test client that files notifications by subscription."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse):
        self.ws = ws
        self.ids = 0
        self.notes: dict[int, list[dict[str, Any]]] = {}

    @classmethod
    async def open(cls, live: LiveNode) -> Socket:
        return cls(await live.session.ws_connect(live.url + "websocket"))

    async def _next(self, timeout: float = 20.0) -> dict[str, Any]:
        msg = await self.ws.receive(timeout)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        data = json.loads(msg.data)
        if data.get("method") == "subscription":
            params = data["params"]
            self.notes.setdefault(params["subscription"], []).append(params)
        return data

    async def call(self, method: str, params: Any = None) -> dict[str, Any]:
        self.ids += 1
        request = {"jsonrpc": "2.0", "id": self.ids, "method": method}
        if params is not None:
            request["params"] = params
        await self.ws.send_str(json.dumps(request))
        while True:
            data = await self._next()
            if data.get("id") == self.ids:
                return data

    async def subscribe(self, **params: Any) -> int:
        reply = await self.call("subscribe", params)
        assert "result" in reply, reply
        return reply["result"]["subscription"]

    async def wait_for(self, sub: int, count: int, timeout: float = 30.0) -> list[dict]:
        async def enough() -> None:
            while len(self.notes.get(sub, [])) < count:
                await self._next()

        await asyncio.wait_for(enough(), timeout)
        return self.notes[sub]


def assert_gap_free(notes: list[dict[str, Any]]) -> None:
    assert [n["seq"] for n in notes] == list(range(1, len(notes) + 1))


async def test_no_event_missed_across_1000_txs(node_factory):  # noqa: F811
    live = await node_factory(extra_accounts=10)
    await live.wait_height(1)
    sock = await Socket.open(live)
    recipient = live.addr("arbiter")
    blocks = await sock.subscribe(stream="new_block")
    txs = await sock.subscribe(stream="tx", account=recipient)
    to = address_from_text(recipient)
    raws = [live.sign(key, T.TRANSFER, nonce, [to, 1])
            for nonce in range(100) for key in live.extra_keys]
    submitted = [sha256(bytes.fromhex(raw)).hex() for raw in raws]
    for start in range(0, len(raws), 50):  # JSON-RPC batches, each in nonce order
        batch = [{"jsonrpc": "2.0", "id": i, "method": "broadcast_tx_sync", "params": {"tx": r}}
                 for i, r in enumerate(raws[start:start + 50])]
        status, replies = await live.post(json.dumps(batch))
        assert status == 200 and all("result" in r for r in replies), replies
    tx_notes = await sock.wait_for(txs, 1000)
    last_height = tx_notes[-1]["result"]["height"]
    heights_seen = {n["result"]["height"] for n in tx_notes}
    # the block stream catches up to the last block that carried one of our txs
    first_block = (await sock.wait_for(blocks, 1))[0]["result"]["height"]
    await sock.wait_for(blocks, last_height - first_block + 1)

    assert sorted(n["result"]["hash"] for n in tx_notes) == sorted(submitted)  # each once
    positions = [(n["result"]["height"], n["result"]["index"]) for n in tx_notes]
    assert positions == sorted(positions) and len(set(positions)) == 1000
    assert all(n["result"]["result"]["code"] == 0 for n in tx_notes)
    assert_gap_free(tx_notes)
    block_notes = sock.notes[blocks]
    assert_gap_free(block_notes)
    heights = [n["result"]["height"] for n in block_notes]
    assert heights == list(range(heights[0], heights[0] + len(heights)))
    per_block = {n["result"]["height"]: n["result"]["num_txs"] for n in block_notes}
    for height in heights_seen:
        assert per_block[height] == sum(1 for n in tx_notes if n["result"]["height"] == height)
    # per-sender order: nonces of each sender arrive ascending
    for key in live.extra_keys:
        sender = live.addr(key)
        nonces = [n["result"]["tx"]["nonce"] for n in tx_notes
                  if n["result"]["tx"]["sender"] == sender]
        assert nonces == list(range(100))
    await sock.ws.close()


async def test_order_and_listing_streams_and_calls_over_the_socket(node_factory):  # noqa: F811
    live = await node_factory()
    await live.wait_height(1)
    sock = await Socket.open(live)
    merchant, buyer = live.addr("merchant"), live.addr("buyer")
    status = await sock.call("status")
    assert status["result"]["node_info"]["chain_id"] == live.chain_id
    listings = await sock.subscribe(stream="listing", merchant=merchant)
    by_buyer = await sock.subscribe(stream="order", account=buyer)
    by_merchant = await sock.subscribe(stream="order", account=merchant)
    one_order = await sock.subscribe(stream="order", order=1)
    other_order = await sock.subscribe(stream="order", order=2)
    others = await sock.subscribe(stream="tx", account=live.addr("arbiter"))

    await live.rpc("broadcast_tx_commit", tx=live.sign("merchant", T.LIST, 0, LISTING))
    await live.rpc("broadcast_tx_commit", tx=live.sign("buyer", T.BUY, 0, [1, 1, 250, None]))
    await live.rpc("broadcast_tx_commit",
                   tx=live.sign("merchant", T.SHIP, 1, [1, "Yamato", "TRK", None, "Kyoto", ""]))
    confirm = await live.rpc("broadcast_tx_commit", tx=live.sign("buyer", T.CONFIRM, 1, [1]))

    notes = await sock.wait_for(by_buyer, 3)
    assert [(n["result"]["status"], n["result"]["reason"]) for n in notes] == [
        ("PAID", "buy"), ("SHIPPED", "ship"), ("COMPLETED", "confirm")]
    assert notes[-1]["result"]["tx_hash"] == confirm["hash"]
    assert notes[-1]["result"]["height"] == confirm["height"]
    assert [n["result"] for n in await sock.wait_for(by_merchant, 3)] == [
        n["result"] for n in notes]
    assert [n["result"] for n in await sock.wait_for(one_order, 3)] == [
        n["result"] for n in notes]
    listing_notes = await sock.wait_for(listings, 1)
    assert listing_notes[0]["result"]["event"] == "listing_created"
    assert listing_notes[0]["result"]["listing_id"] == 1
    for sub in (by_buyer, by_merchant, one_order, listings):
        assert_gap_free(sock.notes[sub])
    assert other_order not in sock.notes and others not in sock.notes  # not theirs

    # unsubscribe ends delivery; unsubscribing twice is an error
    assert (await sock.call("unsubscribe", {"subscription": by_buyer}))["result"] is True
    again = await sock.call("unsubscribe", {"subscription": by_buyer})
    assert again["error"]["code"] == INVALID_PARAMS
    await live.rpc("broadcast_tx_commit",
                   tx=live.sign("buyer", T.REVIEW, 2, [1, 5, "fine"]))
    await live.rpc("broadcast_tx_commit", tx=live.sign("buyer", T.BUY, 3, [1, 1, 250, None]))
    assert (await sock.wait_for(by_merchant, 4))[-1]["result"]["order_id"] == 2
    assert len(sock.notes[by_buyer]) == 3
    assert (await sock.call("unsubscribe_all"))["result"] == {"unsubscribed": 5}
    await sock.ws.close()


async def test_limits_and_bad_subscriptions(node_factory):  # noqa: F811
    live = await node_factory(overrides={("rpc", "ws_max_subscriptions"): 2,
                                         ("rpc", "ws_max_clients"): 1})
    sock = await Socket.open(live)
    bad = [({"stream": "blocks"}, INVALID_PARAMS),
           ({"stream": "tx"}, INVALID_PARAMS),
           ({"stream": "tx", "account": "cm1nope"}, INVALID_PARAMS),
           ({"stream": "order"}, INVALID_PARAMS),
           ({"stream": "order", "order": 1, "account": live.addr("buyer")}, INVALID_PARAMS),
           ({"stream": "new_block", "merchant": live.addr("merchant")}, INVALID_PARAMS),
           ({"stream": "new_block", "colour": "red"}, INVALID_PARAMS),
           ("new_block", INVALID_PARAMS)]
    for params, code in bad:
        reply = await sock.call("subscribe", params)
        assert reply["error"]["code"] == code, (params, reply)
    await sock.subscribe(stream="new_block")
    await sock.subscribe(stream="new_block")
    third = await sock.call("subscribe", {"stream": "new_block"})
    assert third["error"]["code"] == TOO_MANY_REQUESTS
    await sock.ws.send_str("{not json")
    assert (await sock._next())["error"]["code"] == -32700
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await live.session.ws_connect(live.url + "websocket")
    assert refused.value.status == 503
    # subscribing over HTTP is refused with a pointer to the WebSocket
    error = await live.error("subscribe", {"stream": "new_block"})
    assert error["code"] == INVALID_REQUEST and "WebSocket" in error["message"]
    await sock.ws.close()
    await asyncio.sleep(0.05)
    second = await Socket.open(live)  # the slot is free again
    assert "result" in await second.call("health")
    await second.ws.close()


def _raw_ws_client(port: int) -> socket.socket:
    """A WebSocket client that subscribes and then never reads (tiny receive buffer)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /websocket HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 b"Sec-WebSocket-Version: 13\r\n\r\n")
    for _ in range(8):
        payload = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "subscribe",
                              "params": {"stream": "tx", "account": _RECIPIENT[0]}}).encode()
        mask = b"\x01\x02\x03\x04"
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        sock.sendall(bytes([0x81, 0x80 | 126]) + len(payload).to_bytes(2, "big") + mask + masked)
    return sock


def _read_to_eof(sock: socket.socket) -> int:
    total = 0
    try:
        while chunk := sock.recv(1 << 16):
            total += len(chunk)
    except ConnectionResetError:  # the node aborted the connection: also an end
        return total + 1
    return total


_RECIPIENT: list[str] = []


async def test_a_client_that_never_reads_is_dropped_and_the_node_goes_on(node_factory):  # noqa: F811
    live = await node_factory(extra_accounts=4,
                              overrides={("rpc", "ws_max_queued_messages"): 300})
    await live.wait_height(1)
    _RECIPIENT[:] = [live.addr("arbiter")]
    hub = live.node.subscriptions
    reader = await Socket.open(live)
    reader_sub = await reader.subscribe(stream="tx", account=_RECIPIENT[0])
    slow = await asyncio.to_thread(_raw_ws_client, live.node.rpc.port)
    try:
        for _ in range(100):
            if sum(len(c.subscriptions) for c in hub.clients) == 9:
                break
            await asyncio.sleep(0.02)
        to = address_from_text(_RECIPIENT[0])
        sent = 0
        # waves small enough that a client that reads keeps up (each wave is a few
        # blocks of at most 8 x 25 notifications per client)
        for nonce in range(60):
            if hub.dropped_slow:
                break
            for key in live.extra_keys:
                await live.rpc("broadcast_tx_sync", tx=live.sign(key, T.TRANSFER, nonce, [to, 1]))
                sent += 1
            await reader.wait_for(reader_sub, sent)
        assert hub.dropped_slow == 1, "the client that never reads was not dropped"
        assert len(hub.clients) == 1  # only the reader is left
        # the dropped connection is cut: the raw client reads up to the end of the stream
        assert await asyncio.wait_for(asyncio.to_thread(_read_to_eof, slow), 20) > 0
        height = live.node.engine.chain.last_height
        await live.wait_height(height + 2)  # the node keeps committing
        await reader.wait_for(reader_sub, sent)
        assert_gap_free(reader.notes[reader_sub])
    finally:
        slow.close()
        await reader.ws.close()
