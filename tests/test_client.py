"""The Python clients against a live node: the sync Client (the CLI's) unchanged, typed
answers from TypedClient and AsyncClient, errors with the node's code, and AsyncClient
subscriptions that yield a shop's order events in order and unsubscribe on close."""

from __future__ import annotations

import asyncio

import pytest

from commerce_vm import errors as E
from commerce_vm import txtypes as T
from node.client import (
    Account,
    AsyncClient,
    Client,
    ClientError,
    Listing,
    Order,
    Status,
    TxResult,
    TypedClient,
)
from node.rpc.errors import NOT_FOUND
from tests.node_fixtures import LiveNode, live_node, node_factory  # noqa: F401

LISTING = [0, "Tea bowl", 250, 5, 0, 0, "Kyoto", b""]


async def test_sync_clients_raw_and_typed(live_node: LiveNode):  # noqa: F811
    url = live_node.url
    raw = await asyncio.to_thread(Client(url).call, "status")
    assert raw["node_info"]["chain_id"] == live_node.chain_id
    typed = TypedClient(url)
    status = await asyncio.to_thread(typed.status)
    assert isinstance(status, Status) and status.chain_id == live_node.chain_id
    assert status.raw["node_info"]["chain_id"] == status.chain_id  # raw access kept
    buyer = live_node.addr("buyer")
    account = await asyncio.to_thread(typed.account, buyer)
    assert isinstance(account, Account) and account.address == buyer and account.balance > 0
    with pytest.raises(ClientError) as missing:
        await asyncio.to_thread(typed.listing, 99)
    assert missing.value.code == NOT_FOUND
    with pytest.raises(ClientError) as unreachable:
        Client("http://127.0.0.1:9", timeout=2).call("status")
    assert unreachable.value.code is None


async def test_async_client_typed_answers_and_a_shop_watching_its_orders(live_node):  # noqa: F811
    live = live_node
    merchant = live.addr("merchant")
    async with AsyncClient(live.url) as client:
        listed = await client.broadcast_tx_commit(live.sign("merchant", T.LIST, 0, LISTING))
        assert isinstance(listed, TxResult) and listed.ok and listed.height >= 1
        page = await client.listings(merchant=merchant)
        assert [item.title for item in page.items] == ["Tea bowl"]
        assert isinstance(page.items[0], Listing)
        header = await client.block_header(listed.height)
        assert header.height == listed.height

        orders = client.subscribe("order", account=merchant)
        seen: list = []

        async def watch() -> None:
            async for event in orders:
                seen.append(event)
                if len(seen) == 3:
                    return

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.2)  # let the subscription start
        await client.broadcast_tx_commit(live.sign("buyer", T.BUY, 0, [1, 1, 250, None]))
        await client.broadcast_tx_commit(
            live.sign("merchant", T.SHIP, 1, [1, "Yamato", "TRK", None, "Kyoto", ""]))
        await client.broadcast_tx_commit(live.sign("buyer", T.CONFIRM, 1, [1]))
        await asyncio.wait_for(watcher, 20)
        assert [(e.seq, e.result["status"]) for e in seen] == [
            (1, "PAID"), (2, "SHIPPED"), (3, "COMPLETED")]
        await orders.aclose()  # unsubscribes
        assert sum(len(c.subscriptions) for c in live.node.subscriptions.clients) == 0
        order = await client.order(1)
        assert isinstance(order, Order) and order.status == "COMPLETED"

        with pytest.raises(ClientError) as wrong:  # the VM's code and rule name come back
            await client.broadcast_tx_commit(live.sign("buyer", T.CONFIRM, 2, [1]))
        assert wrong.value.code == E.WRONG_ORDER_STATUS.code
        assert wrong.value.data["name"] == "wrong_order_status"
        with pytest.raises(ClientError) as refused:  # a stale nonce is refused at the door
            await client.broadcast_tx_commit(live.sign("buyer", T.CONFIRM, 0, [1]))
        assert refused.value.code == E.BAD_NONCE.code and refused.value.data["name"]
