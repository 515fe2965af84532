"""The load generator: a separate process that submits pre-signed txs and watches commits.

`python -m benchmarks.submitter SPEC OUT` reads a pickled spec (written by the benchmark
before its clock starts), then under asyncio + aiohttp:
- one task per stream (a node's lane, see stages.route) POSTs JSON-RPC batches of
  `broadcast_tx_sync` over a keep-alive connection, one batch in flight per stream so each
  sender's txs (all routed to one stream) arrive in nonce order. Mode "saturation" sends the next batch as soon as the previous one
  is answered; mode "rate" sends batches on a fixed schedule (offered tx/s over all streams).
  A tx refused with MEMPOOL_FULL (-32002) is re-sent after a backoff (counted as a retry).
- one task polls `status` on the watch node and fetches every new `block`; a tx's commit
  time is when the block holding it was observed. Latency = commit observed - POST sent.
It stops when every accepted tx is committed or `drain_timeout` seconds after the last
submission, and writes a pickled result to OUT. Times are seconds since the clock started.
"""

from __future__ import annotations

import asyncio
import json
import pickle
import sys
import time
from typing import Any

import aiohttp

MEMPOOL_FULL = -32002
TX_ALREADY_KNOWN = -32003


async def _post(session: aiohttp.ClientSession, url: str, body: Any) -> Any:
    async with session.post(url, data=json.dumps(body),
                            headers={"Content-Type": "application/json"}) as response:
        return json.loads(await response.read())


class Run:
    def __init__(self, spec: dict[str, Any]):
        self.spec = spec
        self.submit_time: dict[str, float] = {}
        self.accepted: set[str] = set()
        self.rejected: dict[str, list[Any]] = {}
        self.commit: dict[str, tuple[float, int]] = {}
        self.duplicates: list[str] = []
        self.blocks: list[tuple[int, float, int, int]] = []  # height, observed, n_txs, time_ms
        self.block_hashes: dict[int, list[str]] = {}
        self.retries = 0
        self.parked = 0  # accepted, but waiting for an earlier nonce (each lane sends in order)
        self.post_seconds: list[float] = []
        self.submit_done = asyncio.Event()
        self.t0 = 0.0

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def submit_node(self, session: aiohttp.ClientSession, url: str,
                          batches: list[list[tuple[str, str]]], per_node_rate: float | None) -> None:
        sent = 0
        for batch in batches:
            if per_node_rate:
                due = sent / per_node_rate
                delay = due - self.now()
                if delay > 0:
                    await asyncio.sleep(delay)
            sent += len(batch)
            pending = batch
            backoff = 0.05
            while pending:
                body = [{"jsonrpc": "2.0", "id": i, "method": "broadcast_tx_sync",
                         "params": {"tx": raw}} for i, (_, raw) in enumerate(pending)]
                t = self.now()
                for h, _ in pending:
                    self.submit_time.setdefault(h, t)
                replies = await _post(session, url, body)
                self.post_seconds.append(self.now() - t)
                again = self.sort_replies(pending, replies)
                if again:
                    self.retries += len(again)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 1.0)
                pending = again

    def sort_replies(self, pending: list[tuple[str, str]], replies: Any
                     ) -> list[tuple[str, str]]:
        """Counts each tx of a batch as accepted or rejected by its reply (by id); returns
        the txs refused with MEMPOOL_FULL, to send again."""
        by_id = {r.get("id"): r for r in replies} if isinstance(replies, list) else {}
        again = []
        for i, (h, raw) in enumerate(pending):
            reply = by_id.get(i)
            # built only when a reply is missing: str() of every reply, once per tx of the
            # batch, was 98% of this process's CPU at saturation
            error = reply.get("error") if reply is not None else \
                {"code": None, "message": str(replies)[:200]}
            if error is None or error.get("code") == TX_ALREADY_KNOWN:
                self.accepted.add(h)
                if error is None and (reply.get("result") or {}).get("status") == "parked":
                    self.parked += 1
            elif error.get("code") == MEMPOOL_FULL:
                again.append((h, raw))
            else:
                self.rejected[h] = [error.get("code"), error.get("message")]
        return again

    async def watch(self, session: aiohttp.ClientSession, url: str, start_height: int) -> None:
        height = start_height
        drain = self.spec["drain_timeout"]
        idle_since: float | None = None
        while True:
            status = await _post(session, url, {"jsonrpc": "2.0", "id": 0, "method": "status"})
            top = status["result"]["sync_info"]["latest_block_height"]
            while height < top:
                height += 1
                # hashes only: decoding every tx for its view would cost the node more
                # than most of what it does with the tx
                reply = await _post(session, url, {"jsonrpc": "2.0", "id": 0, "method": "block",
                                                   "params": {"height": height,
                                                              "hashes_only": True}})
                seen = self.now()
                block = reply["result"]
                hashes = block["txs"]
                self.blocks.append((height, seen, len(hashes), block["header"]["time_ms"]))
                if self.spec.get("keep_block_hashes"):
                    self.block_hashes[height] = hashes
                for h in hashes:
                    if h in self.commit:
                        self.duplicates.append(h)
                    elif h in self.submit_time:
                        self.commit[h] = (seen, height)
            if self.submit_done.is_set():
                if all(h in self.commit for h in self.accepted):
                    return
                idle_since = idle_since if idle_since is not None else self.now()
                if self.now() - idle_since > drain:
                    return
            await asyncio.sleep(self.spec.get("poll_interval", 0.02))

    async def main(self) -> dict[str, Any]:
        spec = self.spec
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            status = await _post(session, spec["watch_url"],
                                 {"jsonrpc": "2.0", "id": 0, "method": "status"})
            start_height = status["result"]["sync_info"]["latest_block_height"]
            self.t0 = time.monotonic()
            nodes = spec["urls"]
            rate = spec.get("rate")
            per_node = rate / len(nodes) if rate else None
            watcher = asyncio.create_task(self.watch(session, spec["watch_url"], start_height))
            await asyncio.gather(*(self.submit_node(session, url, spec["batches"][i], per_node)
                                   for i, url in enumerate(nodes)))
            submit_end = self.now()
            self.submit_done.set()
            await watcher
        return {"submit_time": self.submit_time, "accepted": sorted(self.accepted),
                "rejected": self.rejected, "commit": self.commit, "duplicates": self.duplicates,
                "blocks": self.blocks, "block_hashes": self.block_hashes,
                "retries": self.retries, "parked": self.parked, "submit_end": submit_end, "end": self.now(),
                "start_height": start_height, "post_seconds": self.post_seconds,
                "t0_monotonic": self.t0}


def main(argv: list[str]) -> int:
    spec_path, out_path = argv
    with open(spec_path, "rb") as f:
        spec = pickle.load(f)
    try:
        import uvloop
        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency
        pass
    result = asyncio.run(Run(spec).main())
    with open(out_path, "wb") as f:
        pickle.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
