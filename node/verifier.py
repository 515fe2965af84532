"""Signature checks off the event loop, on every core.

pynacl releases the GIL inside ed25519 verification, so threads verify in parallel while
the loop goes on executing blocks and answering RPC. A caller holding a batch of raw txs
(an RPC batch, a gossip batch, a block from block sync) hands it to `check_many` before
using it. The decoded, verified Tx objects wait in a bounded cache keyed by tx hash, where
`Node.submit` and block execution pick them up instead of decoding and verifying again on
the loop. A tx that fails its checks is not cached: the normal path on the loop meets it
again and answers with the usual error, so the pool never changes what is accepted.

Work that holds up the chain (a proposal's txs that gossip has not brought yet) goes to a
lane of its own (`urgent=True`): the regular lane is a FIFO that a gossip backlog can fill
for hundreds of milliseconds, and a validator cannot vote before the proposal's txs are
checked.
"""

from __future__ import annotations

import asyncio
import os
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

import commerce_vm as vm

DEFAULT_CAPACITY = 20_000
MIN_CHUNK = 32  # below this a thread hop costs about what the verification saves


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class TxVerifier:
    """`check(raw) -> Tx` is the stateless admission check (decode, params, signature);
    it must be pure: it runs in worker threads."""

    def __init__(self, check: Callable[[bytes], vm.Tx], workers: int,
                 capacity: int = DEFAULT_CAPACITY):
        self._check = check
        self.workers = workers
        self.capacity = capacity
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="verify") if workers else None
        self._urgent = ThreadPoolExecutor(workers, thread_name_prefix="verify-urgent") \
            if workers else None
        self._ready: OrderedDict[bytes, vm.Tx] = OrderedDict()
        self.verified = 0  # txs checked in the pool (for metrics and tests)

    def get(self, tx_hash: bytes) -> vm.Tx | None:
        return self._ready.get(tx_hash)

    def take(self, tx_hash: bytes) -> vm.Tx | None:
        return self._ready.pop(tx_hash, None)

    def discard(self, tx_hashes: Iterable[bytes]) -> None:
        for tx_hash in tx_hashes:
            self._ready.pop(tx_hash, None)

    def __len__(self) -> int:
        return len(self._ready)

    async def check_many(self, raws: Sequence[bytes], *, urgent: bool = False) -> None:
        """Decode and verify `raws` in the pool (the urgent lane: see the module doc);
        returns when all are done. Never raises for a bad tx (see the module doc)."""
        pool = self._urgent if urgent else self._pool
        if pool is None or not raws:
            return
        size = max(MIN_CHUNK, -(-len(raws) // self.workers))
        loop = asyncio.get_running_loop()
        chunks = [raws[i:i + size] for i in range(0, len(raws), size)]
        done = await asyncio.gather(*(loop.run_in_executor(pool, self._check_chunk, chunk)
                                      for chunk in chunks))
        for txs in done:
            self.verified += len(txs)
            for tx in txs:
                self._ready[tx.hash] = tx
        while len(self._ready) > self.capacity:
            self._ready.popitem(last=False)

    def _check_chunk(self, raws: Sequence[bytes]) -> list[vm.Tx]:
        checked = []
        for raw in raws:
            try:
                checked.append(self._check(raw))
            except Exception:  # noqa: BLE001 - refused on the loop with its proper error
                continue
        return checked

    def close(self) -> None:
        for pool in (self._pool, self._urgent):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
        self._pool = self._urgent = None
        self._ready.clear()
