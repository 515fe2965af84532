"""Admin JSON-RPC methods for tests and operators: registered only when
`[rpc] admin_methods = true` (default false). Never expose them on a public port.

- `admin_disconnect_peers(seconds)`: cut this node off the network: the p2p transport is
  stopped (every peer dropped, the listener closed, so new connections are refused) and
  started again after `seconds`, when the persistent peers are redialled. Consensus and
  RPC keep running meanwhile; the node catches up by block sync once reconnected.
- `admin_reconnect_peers()`: end a disconnection early.
- `admin_status()`: whether the node is disconnected, and until when.

It works from the node side only (p2p.Network's start/stop), so p2p needs no extra API.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from node.rpc.dispatcher import Dispatcher, Method
from node.rpc.errors import INVALID_PARAMS, RPCError
from node.rpc.params import Param

if TYPE_CHECKING:
    from node.node import Node

log = logging.getLogger("chainmerce.admin")

MAX_DISCONNECT_SECONDS = 3600


class Isolation:
    """The disconnect/reconnect state of one node."""

    def __init__(self, node: Node):
        self.node = node
        self.until: float | None = None  # time.time() when the network comes back
        self._timer: asyncio.TimerHandle | None = None
        self._lock = asyncio.Lock()

    async def disconnect(self, seconds: int) -> dict[str, Any]:
        node = self.node
        if node.network_factory is None:
            raise RPCError(INVALID_PARAMS, "this node runs without a p2p network")
        async with self._lock:
            if node.network is not None:
                network, node.network = node.network, None
                await network.stop()
            if self._timer is not None:
                self._timer.cancel()
            self.until = time.time() + seconds
            self._timer = asyncio.get_running_loop().call_later(
                seconds, lambda: asyncio.ensure_future(self.reconnect()))
        log.warning("admin: disconnected from every peer for %d s", seconds)
        return self.status()

    async def reconnect(self) -> dict[str, Any]:
        node = self.node
        async with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if node.network is None and node.network_factory is not None and \
                    not node.stopping:
                network = node.network_factory(node, node.net)
                await network.start()
                node.network = network
                log.warning("admin: network started again; redialling peers")
            self.until = None
        return self.status()

    def status(self) -> dict[str, Any]:
        return {"disconnected": self.node.network is None and self.until is not None,
                "reconnect_at_ms": None if self.until is None else int(self.until * 1000)}


def register_admin(d: Dispatcher, node: Node) -> None:
    """Register the admin methods, only if the config enables them."""
    if not node.config.get("rpc", "admin_methods"):
        return
    isolation = Isolation(node)
    node.admin_isolation = isolation  # type: ignore[attr-defined]
    d.register(Method(
        "admin_disconnect_peers", isolation.disconnect,
        (Param("seconds", "int", "how long to stay disconnected", required=True, minimum=1,
               maximum=MAX_DISCONNECT_SECONDS),),
        "Admin (test/ops only): drop every peer and refuse connections for `seconds`."))
    d.register(Method("admin_reconnect_peers", isolation.reconnect, (),
                      "Admin (test/ops only): end a disconnection now."))
    d.register(Method("admin_status", isolation.status, (),
                      "Admin (test/ops only): whether the node is disconnected."))
