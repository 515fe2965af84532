"""A real node in tmp_path, driven in-process: its aiohttp JSON-RPC app on a free port.

`node_factory` builds and starts nodes (stopped at teardown); each comes as a `LiveNode`
with the dev keys, optional extra funded keys (added to the genesis before the first start)
and an `rpc()` helper that POSTs JSON-RPC to 127.0.0.1:port and returns the decoded answer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import commerce_vm as vm
from core.address import address_from_pubkey, address_to_text
from core.keys import PrivateKey
from node.genesis import load_genesis
from node.home import DEV_ACCOUNTS, Home, init_home
from node.keystore import Keystore
from node.node import Node

CHAIN_ID = "chainmerce-test"
EXTRA_BALANCE = 10_000_000


@dataclass
class LiveNode:
    node: Node
    home: Path
    session: aiohttp.ClientSession
    keys: dict[str, PrivateKey]
    extra_keys: list[PrivateKey] = field(default_factory=list)
    _ids: int = 0

    @property
    def url(self) -> str:
        assert self.node.rpc is not None
        return f"http://127.0.0.1:{self.node.rpc.port}/"

    @property
    def chain_id(self) -> str:
        return self.node.chain_id

    def addr(self, name_or_key: str | PrivateKey) -> str:
        key = self.keys[name_or_key] if isinstance(name_or_key, str) else name_or_key
        return address_to_text(address_from_pubkey(key.public_key))

    def sign(self, who: str | PrivateKey, tx_type: int, nonce: int, body: list[Any],
             fee: int = 10) -> str:
        key = self.keys[who] if isinstance(who, str) else who
        return vm.sign_tx(key, self.chain_id, tx_type, nonce, fee, body).hex()

    async def post(self, data: bytes | str, headers: dict[str, str] | None = None
                   ) -> tuple[int, Any]:
        """POST raw bytes to / and return (HTTP status, decoded JSON body or None)."""
        async with self.session.post(self.url, data=data, headers=headers) as response:
            body = await response.read()
            return response.status, (json.loads(body) if body else None)

    async def call(self, method: str, params: Any = None) -> dict[str, Any]:
        """One JSON-RPC request; returns the whole response object (result or error)."""
        self._ids += 1
        request: dict[str, Any] = {"jsonrpc": "2.0", "id": self._ids, "method": method}
        if params is not None:
            request["params"] = params
        status, reply = await self.post(json.dumps(request))
        assert status == 200, (status, reply)
        assert reply["id"] == self._ids and reply["jsonrpc"] == "2.0"
        return reply

    async def rpc(self, method: str, **params: Any) -> Any:
        """One call that must succeed; returns its result."""
        reply = await self.call(method, params)
        assert "result" in reply, (method, params, reply)
        return reply["result"]

    async def error(self, method: str, params: Any = None) -> dict[str, Any]:
        """One call that must fail; returns its error object."""
        reply = await self.call(method, params)
        assert "error" in reply and "result" not in reply, (method, params, reply)
        return reply["error"]

    async def wait_height(self, height: int, timeout: float = 20.0) -> int:
        async def reached() -> int:
            while True:
                current = self.node.engine.chain.last_height
                if current >= height:
                    return current
                await asyncio.sleep(0.02)

        return await asyncio.wait_for(reached(), timeout)


def _add_balances(home: Path, keys: list[PrivateKey], amount: int) -> None:
    """Fund extra accounts by rewriting the genesis before the node's first start."""
    h = Home(home)
    genesis = load_genesis(h.genesis_file)
    balances = dict(genesis.params.initial_balances)
    for key in keys:
        balances[address_from_pubkey(key.public_key)] = amount
    params = dataclasses.replace(genesis.params, initial_balances=tuple(sorted(balances.items())))
    h.genesis_file.write_text(dataclasses.replace(genesis, params=params).to_json())


async def start_node(tmp: Path, session: aiohttp.ClientSession, *, backend: str = "memory",
                     extra_accounts: int = 0,
                     overrides: dict[tuple[str, str], Any] | None = None) -> LiveNode:
    config = {("rpc", "listen"): "127.0.0.1:0", ("consensus", "timeout_commit_ms"): 20,
              ("consensus", "empty_block_interval_ms"): 100, ("storage", "backend"): backend}
    config.update(overrides or {})
    init_home(tmp, CHAIN_ID, dev=True, config_overrides=config)
    keystore = Keystore(tmp)
    keys = {name: keystore.load(name, None) for name in DEV_ACCOUNTS}
    extra = [PrivateKey(i.to_bytes(4, "big") * 8) for i in range(1, extra_accounts + 1)]
    if extra:
        _add_balances(tmp, extra, EXTRA_BALANCE)
    node = Node(tmp, network_factory=None)  # one node: no p2p listener
    await node.start()
    return LiveNode(node, tmp, session, keys, extra)


@pytest.fixture
async def node_factory(tmp_path):
    started: list[LiveNode] = []
    async with aiohttp.ClientSession() as session:
        async def make(name: str = "node", **kwargs: Any) -> LiveNode:
            live = await start_node(tmp_path / name, session, **kwargs)
            started.append(live)
            return live

        try:
            yield make
        finally:
            for live in started:
                await live.node.stop()


@pytest.fixture
async def live_node(node_factory) -> LiveNode:
    """A dev node on the memory backend that has committed at least one block."""
    live = await node_factory()
    await live.wait_height(1)
    return live
