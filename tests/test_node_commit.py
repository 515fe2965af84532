"""A height's synced write overlaps the mempool's update to the new state; nothing a
client or peer can see (a commit answer, a listener, the next height) comes before the
write has landed."""

from __future__ import annotations

from commerce_vm import txtypes as T
from core.address import address_from_text
from tests.node_fixtures import node_factory  # noqa: F401


async def test_the_pool_update_overlaps_the_write_and_answers_wait_for_it(node_factory):  # noqa: F811
    live = await node_factory(backend="leveldb")
    await live.wait_height(1)
    node, order = live.node, []
    store, mempool = node.db.store, node.mempool
    begin_write, update = store.begin_write, mempool.update

    def traced_begin_write(batch, sync=False):
        pending = begin_write(batch, sync)
        order.append("write begun")

        class Traced:
            def wait(self):
                pending.wait()
                order.append("write landed")
        return Traced()

    def traced_update(*args, **kwargs):
        order.append("pool updated")
        return update(*args, **kwargs)

    store.begin_write, mempool.update = traced_begin_write, traced_update
    node.events.commit_listeners.append(lambda committed: order.append(
        f"listener {len(committed.block.txs)}"))
    to = address_from_text(live.addr("arbiter"))
    answer = await live.rpc("broadcast_tx_commit",
                            tx=live.sign("buyer", T.TRANSFER, 0, [to, 1]))
    assert answer["code"] == 0, answer
    last = order.index("listener 1")
    # the block's own steps, in this order, right before its listener
    assert order[last - 3:last + 1] == ["write begun", "pool updated", "write landed",
                                        "listener 1"]
    assert node.db.last_committed_height() >= answer["height"]
