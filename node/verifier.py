"""Signature checks off the event loop, in worker processes.

A caller holding a batch of raw txs (an RPC batch, a gossip batch, a block from block sync)
hands it to `check_many` before using it. The batch goes in chunks to worker processes
(node.verify_worker), which answer one flag per tx: its signature verifies. The loop then
decodes each flagged tx with the signature marked verified and runs the other stateless
checks; the Tx objects wait in a bounded cache keyed by tx hash, where `Node.submit` and
block execution pick them up instead of verifying again on the loop. A tx that fails
anything is not cached: the normal path on the loop meets it again and answers with the
usual error, so the workers never change what is accepted. A worker that dies, answers
wrong or not within REQUEST_TIMEOUT_S costs only speed: its chunk is left for the loop,
and a new worker starts at the next chunk (at most once per RESTART_DELAY_S).

Processes rather than threads: pynacl releases the GIL inside a verification, but a thread
must take it back after every signature, and each hand-off stopped the loop for longer than
the Python work it did. Measured in block sync, the loop's wall time per block was 65%
more than its CPU time with verify threads (docs/performance.md).

Work that holds up the chain (a proposal's txs that gossip has not brought yet) is
`urgent`: its chunks go to the next free worker before any regular chunk, and chunks are
at most MAX_CHUNK txs, so it waits for one chunk at most, not for a gossip backlog.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence

import msgpack

import commerce_vm as vm
from node.verify_worker import HEADER

log = logging.getLogger("chainmerce.verifier")

DEFAULT_CAPACITY = 20_000
MIN_CHUNK = 32  # below this the trip to a worker costs about what the verification saves
MAX_CHUNK = 256  # ~30 ms of verification: the longest an urgent chunk waits for a worker
RESTART_DELAY_S = 1.0
REQUEST_TIMEOUT_S = 10.0  # a chunk takes ~30 ms: a worker this late is stuck (or stopped)


def default_workers() -> int:
    """One per usable core. The workers yield to the loop (they run niced), so they use
    what the loop leaves, its own core too while it waits for a batch they verify: with
    one fewer, a lone validator in `benchmarks.inprocess` took 15% longer."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return cores or 1


def worker_command(max_tx_size: int) -> list[str]:
    return [sys.executable, "-m", "node.verify_worker", str(max_tx_size)]


class _Worker:
    """One worker process, one request in flight (the dispatcher sees to that)."""

    def __init__(self, command: Sequence[str]):
        self.command = list(command)
        self.process: asyncio.subprocess.Process | None = None
        self.failed_at = -RESTART_DELAY_S
        self.starts = 0

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def flags(self, raws: Sequence[bytes]) -> bytes | None:
        """One byte per raw (1: its signature verifies), or None if the worker failed."""
        try:
            if not self.alive:
                if time.monotonic() - self.failed_at < RESTART_DELAY_S:
                    return None
                self.starts += 1
                self.process = await asyncio.create_subprocess_exec(
                    *self.command, stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE)
            return await asyncio.wait_for(self._ask(raws), REQUEST_TIMEOUT_S)
        except (OSError, EOFError, ValueError, asyncio.IncompleteReadError, TimeoutError) as exc:
            log.warning("verify worker failed (%s); its txs are checked on the loop", exc)
            self.failed_at = time.monotonic()
            if self.alive:  # e.g. it answered wrong: it will not be asked again
                try:
                    self.process.kill()
                except ProcessLookupError:  # it exited meanwhile
                    pass
            self.process = None  # asyncio reaps it
            return None

    async def _ask(self, raws: Sequence[bytes]) -> bytes:
        assert self.process is not None
        assert self.process.stdin is not None and self.process.stdout is not None
        payload = msgpack.packb(list(raws), use_bin_type=True)
        self.process.stdin.write(len(payload).to_bytes(HEADER, "big") + payload)
        await self.process.stdin.drain()
        size = int.from_bytes(await self.process.stdout.readexactly(HEADER), "big")
        if size != len(raws):
            raise ValueError(f"{size} flags for {len(raws)} txs")
        return await self.process.stdout.readexactly(size)

    async def stop(self) -> None:
        """Close its stdin (it exits at the end of its input); kill it if it lingers."""
        process, self.process = self.process, None
        if process is None or process.returncode is not None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), 2)
        except TimeoutError:
            process.kill()
            await process.wait()


class TxVerifier:
    """`check(raw, signature_verified)` is the node's stateless admission check (decode,
    params, and the signature unless `signature_verified`); `command` starts one worker."""

    def __init__(self, check: Callable[[bytes, bool], vm.Tx], workers: int,
                 command: Sequence[str] = (), capacity: int = DEFAULT_CAPACITY):
        self._check = check
        self.capacity = capacity
        self._idle = [_Worker(command) for _ in range(workers)] if command else []
        self._all = list(self._idle)
        self._queues: tuple[deque, deque] = (deque(), deque())  # urgent, regular
        self._running: set[asyncio.Task] = set()
        self._ready: OrderedDict[bytes, vm.Tx] = OrderedDict()
        self.verified = 0  # txs verified by the workers (for metrics and tests)

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
        """Verify `raws` in the workers and cache the txs that pass (the urgent lane: see
        the module doc); returns when all are done. Never raises for a bad tx."""
        if not self._all or not raws:
            return
        size = min(MAX_CHUNK, max(MIN_CHUNK, -(-len(raws) // len(self._all))))
        loop = asyncio.get_running_loop()
        done = []
        queue = self._queues[0 if urgent else 1]
        for i in range(0, len(raws), size):
            future = loop.create_future()
            queue.append((raws[i:i + size], future))
            done.append(future)
        self._dispatch()
        await asyncio.gather(*done)

    def _dispatch(self) -> None:
        while self._idle and (self._queues[0] or self._queues[1]):
            chunk, future = (self._queues[0] or self._queues[1]).popleft()
            task = asyncio.get_running_loop().create_task(
                self._verify(self._idle.pop(), chunk, future))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _verify(self, worker: _Worker, chunk: Sequence[bytes],
                      future: asyncio.Future) -> None:
        try:
            flags = await worker.flags(chunk)
            if flags is not None:
                self._accept(chunk, flags)
        finally:  # also when closed meanwhile: the chunk is left for the loop
            if not future.done():
                future.set_result(None)
            if self._all:
                self._idle.append(worker)
                self._dispatch()

    def _accept(self, chunk: Sequence[bytes], flags: bytes) -> None:
        check, ready = self._check, self._ready
        for raw, ok in zip(chunk, flags, strict=True):
            if not ok:
                continue
            try:
                tx = check(raw, True)
            except Exception:  # noqa: BLE001 - refused on the loop with its proper error
                continue
            ready[tx.hash] = tx
            self.verified += 1
        while len(ready) > self.capacity:
            ready.popitem(last=False)

    async def aclose(self) -> None:
        workers, self._all, self._idle = self._all, [], []
        for task in list(self._running):
            task.cancel()
        for queue in self._queues:
            while queue:
                _, future = queue.popleft()
                future.set_result(None)
        await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)
        self._ready.clear()
