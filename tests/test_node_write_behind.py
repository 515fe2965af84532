"""A block's batch is written on a writer thread while the next height runs
(storage.writebehind). What must wait for it: every signature of a later height, the WAL
marking the next height, and every client that hears of the block."""

from __future__ import annotations

import asyncio
import json
import time

from commerce_vm import txtypes as T
from core.address import address_from_text
from storage.kv import KVStore
from storage.layout import META_BLOCK_HEIGHT, NS_META, read_u64
from tests.node_fixtures import node_factory  # noqa: F401

WRITE_DELAY_S = 0.3  # every batch in flight this long: longer than an empty height takes


class _SlowWrites:
    """The node's store with each batch write held back, logging when it lands."""

    def __init__(self, store, log: list[tuple[str, int]]):
        self._store, self._log = store, log

    def write(self, batch, sync=False):
        height = next((read_u64(v) for k, v in batch.ops
                       if k == NS_META + META_BLOCK_HEIGHT and v is not None), None)
        time.sleep(WRITE_DELAY_S)
        self._store.write(batch, sync=sync)
        if height is not None:
            self._log.append(("written", height))

    prepare_write = KVStore.prepare_write  # through `write` above, not the store's own

    def __getattr__(self, name):
        return getattr(self._store, name)


async def test_nothing_outruns_the_write_of_the_block_before(node_factory):  # noqa: F811
    live = await node_factory(backend="leveldb")
    node = live.node
    await live.wait_height(2)
    log: list[tuple[str, int]] = []
    node.db.wait_durable()
    on_disk = node.db.last_committed_height()
    node.db.store.store = _SlowWrites(node.db.store.store, log)
    start_height, save = node.wal.start_height, node.signing_file.save

    def logged_start_height(height):
        log.append(("wal", height))
        start_height(height)

    def logged_save(state):
        log.append(("sign", state.height))
        save(state)

    node.wal.start_height, node.signing_file.save = logged_start_height, logged_save

    async def poll_status() -> None:  # also while a block is in flight, not only after
        while True:  # its own request id: live.rpc's counter is not for concurrent calls
            _, reply = await live.post(json.dumps({"jsonrpc": "2.0", "id": "poll",
                                                   "method": "status"}))
            log.append(("status", reply["result"]["sync_info"]["latest_block_height"]))
            await asyncio.sleep(0.01)

    poller = asyncio.create_task(poll_status())
    try:
        to = address_from_text(live.addr("arbiter"))
        for nonce in range(4):
            result = await live.rpc("broadcast_tx_commit",
                                    tx=live.sign("buyer", T.TRANSFER, nonce, [to, 1]))
            log.append(("answered", result["height"]))
            status = await live.rpc("status")
            log.append(("status", status["sync_info"]["latest_block_height"]))
            block = await live.rpc("block", height=status["sync_info"]["latest_block_height"])
            assert block["header"]["height"] == status["sync_info"]["latest_block_height"]
        await asyncio.sleep(0.3)
    finally:
        poller.cancel()
    kinds = {kind for kind, _ in log}
    assert {"written", "wal", "sign", "answered", "status"} <= kinds, log
    assert node.engine.chain.last_height > on_disk + 4
    for i, (kind, height) in enumerate(log):
        written = max([h for k, h in log[:i] if k == "written"], default=on_disk)
        if kind in ("wal", "sign"):
            assert written >= height - 1, f"{kind} {height} before {height - 1} was written: {log}"
        elif kind in ("answered", "status"):
            assert written >= height, f"{kind} {height} before it was written: {log}"
