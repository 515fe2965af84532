"""Shared helpers for the p2p tests: handshake pairs, a recording handler, polling."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from core.keys import PrivateKey
from p2p.handshake import Handshake, HandshakeResult

CHAIN = "p2p-test"


def key(n: int) -> PrivateKey:
    return PrivateKey(bytes([n]) * 32)


def run_handshake(a: Handshake, b: Handshake) -> tuple[HandshakeResult, HandshakeResult]:
    """Drive two sans-IO handshakes against each other to completion."""
    to_b, to_a = a.start(), b.start()
    for _ in range(4):
        out_a = a.receive_data(to_a) if to_a and a.result is None else b""
        out_b = b.receive_data(to_b) if to_b and b.result is None else b""
        to_a, to_b = out_b, out_a
        if a.result is not None and b.result is not None:
            return a.result, b.result
    raise AssertionError("handshake stalled")


def pair(chain_a: str = CHAIN, chain_b: str = CHAIN, **kw) -> tuple[Handshake, Handshake]:
    a = Handshake(key(1), chain_a, initiator=True, listen_address="127.0.0.1:1000",
                  moniker="a", **kw)
    b = Handshake(key(2), chain_b, initiator=False, listen_address="127.0.0.1:2000",
                  moniker="b")
    return a, b


class Recorder:
    """A MessageHandler that records everything."""

    def __init__(self) -> None:
        self.messages: list[tuple[bytes, int, bytes]] = []
        self.connected: list[bytes] = []
        self.disconnected: list[bytes] = []

    def on_peer_connected(self, peer_id: bytes) -> None:
        self.connected.append(peer_id)

    def on_peer_disconnected(self, peer_id: bytes) -> None:
        self.disconnected.append(peer_id)

    def on_message(self, peer_id: bytes, channel: int, payload: bytes) -> None:
        self.messages.append((peer_id, channel, payload))


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll until `condition()` holds; fail the test after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)
