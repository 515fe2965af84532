"""Resource limits: a 50,000-tx flood and a connection flood do not take the node down.

- Tx flood (a real node process): one client submits 50,000 pre-signed transfers of 50
  senders in JSON-RPC batches over several connections, retrying a sender from its first
  refused nonce. The pool's limits hold (`num_unconfirmed_txs` never exceeds them), the
  node answers MEMPOOL_FULL (-32002) beyond them, `health` keeps answering, the node's RSS
  (read from /proc) stays bounded, and every accepted tx is committed exactly where the
  index says.
- Connection flood (in-process node): with [rpc] max_open_connections = N, N idle
  connections are held, the next connection gets HTTP 503 with JSON-RPC error -32006, a
  held connection is still served, hundreds of concurrent clients get either an answer or
  that error (never a hang), and within the limit everything is served.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp

import commerce_vm as vm
from commerce_vm import query
from commerce_vm import txtypes as T
from core.address import address_from_pubkey, address_from_text
from core.hashing import sha256
from core.keys import PrivateKey
from node.home import Home
from node.rpc.errors import MEMPOOL_FULL, TOO_MANY_REQUESTS
from storage.chaindb import ChainDB
from tests.e2e_helpers import NodeHome, init_home, node_homes_fixture, set_config  # noqa: F401
from tests.node_fixtures import _add_balances, node_factory  # noqa: F401

SENDERS = 50
PER_SENDER = 1000  # 50,000 txs
POOL_TXS = 1000
PER_SENDER_POOL = 40
WORKERS = 10
BATCH = 64
RSS_BOUND_BYTES = 600 * 1024 * 1024
FLOOD_DEADLINE = 150.0


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def _post(session: aiohttp.ClientSession, url: str, body: object) -> object:
    async with session.post(url, data=json.dumps(body),
                            headers={"Content-Type": "application/json"}) as response:
        assert response.status == 200, (response.status, await response.text())
        return await response.json()


async def test_flood_of_fifty_thousand_txs(tmp_path: Path, node_homes: list[NodeHome]) -> None:
    home = init_home(tmp_path / "home", chain_id="chainmerce-flood",
                     consensus={"timeout_commit_ms": 300, "empty_block_interval_ms": 100})
    node_homes.append(home)
    set_config(home.config_file, "mempool", {"max_txs": POOL_TXS,
                                             "max_txs_per_sender": PER_SENDER_POOL})
    keys = [PrivateKey((i + 7).to_bytes(4, "big") * 8) for i in range(SENDERS)]
    _add_balances(home.path, keys, 10_000_000)
    sink = address_from_text(home.accounts["arbiter"])
    signed = [[vm.sign_tx(k, home.chain_id, T.TRANSFER, n, 10, [sink, 1]).hex()
               for n in range(PER_SENDER)] for k in keys]
    home.start()
    pid = home.proc.pid
    url = home.url + "/"
    accepted: set[str] = set()
    next_nonce = [0] * SENDERS
    full_refusals = 0
    peak_rss = _rss(pid)
    peak_pool = 0
    stop_watch = asyncio.Event()

    async def watch(session: aiohttp.ClientSession) -> None:
        nonlocal peak_rss, peak_pool
        while not stop_watch.is_set():
            reply = await _post(session, url, [
                {"jsonrpc": "2.0", "id": 1, "method": "health"},
                {"jsonrpc": "2.0", "id": 2, "method": "num_unconfirmed_txs"}])
            assert all("result" in r for r in reply), reply
            pool = next(r for r in reply if r["id"] == 2)["result"]
            peak_pool = max(peak_pool, pool["n_txs"])
            assert pool["n_txs"] <= POOL_TXS, pool
            peak_rss = max(peak_rss, _rss(pid))
            await asyncio.sleep(0.1)

    async def worker(session: aiohttp.ClientSession, senders: list[int]) -> None:
        nonlocal full_refusals
        while True:
            live = [s for s in senders if next_nonce[s] < PER_SENDER]
            if not live:
                return
            # One batch: the next txs of a few senders, each sender's in nonce order.
            plan: list[tuple[int, int]] = []
            for s in live:
                first = next_nonce[s]
                plan += [(s, n) for n in range(first, min(PER_SENDER, first + 16))]
                if len(plan) >= BATCH:
                    break
            plan = plan[:BATCH]
            body = [{"jsonrpc": "2.0", "id": i, "method": "broadcast_tx_sync",
                     "params": {"tx": signed[s][n]}} for i, (s, n) in enumerate(plan)]
            replies = {r["id"]: r for r in await _post(session, url, body)}
            refused: set[int] = set()
            for i, (s, n) in enumerate(plan):
                reply = replies[i]
                if s in refused:
                    continue  # later nonces of a refused sender are resent from the gap
                if "result" in reply and reply["result"]["code"] == 0:
                    accepted.add(signed[s][n])
                    next_nonce[s] = n + 1
                else:
                    assert reply["error"]["code"] == MEMPOOL_FULL, reply
                    full_refusals += 1
                    refused.add(s)
            if refused:
                await asyncio.sleep(0.05)  # back off: the pool drains at the next commit

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        watcher = asyncio.create_task(watch(session))
        groups = [list(range(w, SENDERS, WORKERS)) for w in range(WORKERS)]
        await asyncio.wait_for(asyncio.gather(*(worker(session, g) for g in groups)),
                               FLOOD_DEADLINE)
        # Everything accepted drains into blocks.
        for _ in range(600):
            reply = await _post(session, url, {"jsonrpc": "2.0", "id": 1,
                                               "method": "num_unconfirmed_txs"})
            if reply["result"]["n_txs"] == 0:
                break
            await asyncio.sleep(0.1)
        stop_watch.set()
        await watcher
    assert len(accepted) == SENDERS * PER_SENDER
    assert full_refusals > 0, "the flood never reached the pool's limits"
    assert PER_SENDER_POOL <= peak_pool <= POOL_TXS
    assert peak_rss < RSS_BOUND_BYTES, f"node RSS peaked at {peak_rss >> 20} MiB"
    assert home.stop() == 0
    with ChainDB.open(Home(home.path).db_path) as db:
        for raw_hex in accepted:
            location = db.txs.by_hash(sha256(bytes.fromhex(raw_hex)))
            assert location is not None and location.code == 0, raw_hex[:32]
        for key in keys:
            assert query.nonce(db.state, address_from_pubkey(key.public_key)) == PER_SENDER


LIMIT = 40


async def _raw_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       method: str) -> tuple[int, dict]:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method}).encode()
    writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    status = int(head.split(b" ", 2)[1])
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length"))
    return status, json.loads(await asyncio.wait_for(reader.readexactly(length), 10))


async def test_connection_flood_is_refused_beyond_the_limit(node_factory) -> None:  # noqa: F811
    live = await node_factory(overrides={("rpc", "max_open_connections"): LIMIT})
    await live.wait_height(1)
    port = live.node.rpc.port
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(LIMIT)]
    try:
        for _ in range(50):  # the server counts them once it has accepted them
            if live.node.rpc.connections.open == LIMIT:
                break
            await asyncio.sleep(0.02)
        assert live.node.rpc.connections.open == LIMIT
        # Beyond the limit: a clear refusal, not a hang or a reset.
        extra = await asyncio.open_connection("127.0.0.1", port)
        status, reply = await _raw_request(*extra, "status")
        extra[1].close()
        assert status == 503
        assert reply["error"]["code"] == TOO_MANY_REQUESTS
        assert reply["error"]["data"] == {"name": "max_open_connections", "limit": LIMIT}
        assert "too many open connections" in reply["error"]["message"]
        # Within the limit the node keeps serving: a held (idle until now) connection works.
        status, reply = await _raw_request(*held[0], "health")
        assert status == 200 and "result" in reply
        # Hundreds of concurrent clients while the limit is full: each is refused cleanly.
        async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, force_close=True)) as burst:
            async def one() -> int:
                async with burst.post(live.url, json={"jsonrpc": "2.0", "id": 1,
                                                      "method": "status"}) as response:
                    body = await response.json(content_type=None)
                    if response.status == 503:
                        assert body["error"]["code"] == TOO_MANY_REQUESTS
                    else:
                        assert response.status == 200 and "result" in body
                    return response.status

            statuses = await asyncio.gather(*(one() for _ in range(300)))
        assert set(statuses) == {503}
        assert live.node.rpc.connections.refused >= 301
    finally:
        for _, writer in held:
            writer.close()
    for _ in range(100):
        if live.node.rpc.connections.open == 0:
            break
        await asyncio.sleep(0.02)
    # With the idle connections gone, a busy client inside the limit gets every answer.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=LIMIT - 5)) as client:
        async def status() -> int:
            async with client.post(live.url, json={"jsonrpc": "2.0", "id": 1,
                                                   "method": "status"}) as response:
                await response.read()
                return response.status

        assert set(await asyncio.gather(*(status() for _ in range(500)))) == {200}
    assert live.node.engine.chain.last_height >= 1 and not live.node.driver.stopped
