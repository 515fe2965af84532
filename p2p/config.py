"""The p2p API's plain types: channels, configuration, peer info, the handler protocol."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol


class Channel(IntEnum):
    CONSENSUS = 1  # payload: consensus.messages.encode_message(...) bytes (node decodes)
    TXS = 2  # payload: node-defined (a batch of raw txs)
    BLOCKSYNC = 3  # payload: node-defined (status / block request / block response)
    PEX = 4  # p2p-internal peer exchange; never delivered to the node


NODE_CHANNELS = frozenset((Channel.CONSENSUS, Channel.TXS, Channel.BLOCKSYNC))


@dataclass(frozen=True)
class NetworkConfig:
    listen: str  # "127.0.0.1:26656" ("127.0.0.1:0" picks a free port)
    persistent_peers: tuple[str, ...] = ()  # "id@host:port", redialled with backoff forever
    seeds: tuple[str, ...] = ()  # dialled to learn addresses through PEX, then dropped
    max_inbound: int = 40
    max_outbound: int = 10
    max_frame_bytes: int = 1 << 20  # after sealing; larger -> connection closed
    send_queue_bytes: int = 8 << 20  # per peer; a peer that cannot keep up is disconnected
    ban_seconds: float = 300.0
    handshake_timeout: float = 5.0
    moniker: str = ""
    # additions beyond the pinned contract (all defaulted):
    max_message_bytes: int = 32 << 20  # one message may span frames up to this size
    recv_bytes_per_second: float = 64 << 20  # reading from a peer is throttled above this
    recv_messages_per_second: float = 50_000.0  # each message beyond this (burst 1 s) = punish
    pex_interval: float = 30.0  # ask a peer for addresses this often while outbound is short
    ping_interval: float = 10.0  # an idle connection gets a ping this often
    idle_timeout: float = 60.0  # nothing received for this long -> disconnect
    address_book_size: int = 1000

    def __post_init__(self) -> None:
        if self.max_inbound < 0 or self.max_outbound < 0:
            raise ValueError("peer limits must be non-negative")
        if self.max_frame_bytes < 4096:
            raise ValueError("max_frame_bytes must be at least 4096")
        if self.send_queue_bytes <= 0 or self.max_message_bytes <= 0:
            raise ValueError("send_queue_bytes and max_message_bytes must be positive")
        if self.handshake_timeout <= 0 or self.ban_seconds < 0:
            raise ValueError("handshake_timeout must be positive, ban_seconds non-negative")


@dataclass(frozen=True)
class PeerInfo:
    peer_id: bytes
    address: str  # "host:port" it listens on, as it announced ("" if it does not listen)
    outbound: bool
    moniker: str
    connected_at: float  # wall-clock seconds
    bytes_sent: int
    bytes_received: int
    messages_sent: int
    messages_received: int
    score: int  # 0 for a clean peer; minus its current penalty points (-100 = banned)


class MessageHandler(Protocol):
    """Implemented by the node. Called on the event loop thread; must not block."""

    def on_peer_connected(self, peer_id: bytes) -> None: ...

    def on_peer_disconnected(self, peer_id: bytes) -> None: ...

    def on_message(self, peer_id: bytes, channel: int, payload: bytes) -> None: ...
