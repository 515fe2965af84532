"""p2p: authenticated, encrypted gossip between chainmerce nodes (see docs/p2p.md)."""

from p2p.config import Channel, MessageHandler, NetworkConfig, PeerInfo
from p2p.errors import FrameError, HandshakeError, P2PError
from p2p.ids import format_peer_address, node_id_of, parse_peer_address
from p2p.network import Network

__all__ = [
    "Channel",
    "FrameError",
    "HandshakeError",
    "MessageHandler",
    "Network",
    "NetworkConfig",
    "P2PError",
    "PeerInfo",
    "format_peer_address",
    "node_id_of",
    "parse_peer_address",
]
