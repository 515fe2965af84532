"""The RPC thread ([rpc] reader_thread): committed-state reads are answered while the
node's loop is busy; everything else still runs on that loop, in order.

The node runs on the test's loop, so "busy" is the test blocking that loop with a
`time.sleep`; the requests come from a plain thread with urllib, which needs no loop.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
from typing import Any

import pytest

from commerce_vm import txtypes as T
from core.address import address_from_text
from node.rpc.errors import METHOD_NOT_FOUND, NOT_FOUND
from tests.node_fixtures import node_factory  # noqa: F401 - fixture

BLOCKED_S = 1.5


def _post(url: str, body: Any) -> Any:
    request = urllib.request.Request(url, json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as reply:
        return json.loads(reply.read())


def _in_thread(url: str, body: Any) -> tuple[threading.Event, list[Any]]:
    done, answer = threading.Event(), []

    def run() -> None:
        answer.append(_post(url, body))
        done.set()

    threading.Thread(target=run, daemon=True).start()
    return done, answer


def _call(method: str, params: Any = None, id_: int = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "method": method, "params": params or {}}


async def _while_loop_blocked(url: str, body: Any) -> tuple[bool, Any]:
    """Send `body` from a thread, block the node's loop for BLOCKED_S, and tell whether
    the answer came while the loop was blocked; then the answer itself."""
    done, answer = _in_thread(url, body)
    time.sleep(BLOCKED_S)  # noqa: ASYNC251 - the point: the node's loop can do nothing
    answered_while_blocked = done.is_set()
    for _ in range(600):  # now the loop runs again: whatever waited for it gets its turn
        if done.is_set():
            break
        await asyncio.sleep(0.05)
    return answered_while_blocked, answer[0]


@pytest.mark.parametrize("method,params", [
    ("account", {"address": "buyer"}), ("order", {"id": 1}), ("listing", {"id": 1}),
    ("block", {}), ("blockchain", {}), ("tx_search", {"account": "buyer"}),
    ("rewards_pool", {}), ("genesis", {}),
])
async def test_reads_are_answered_while_the_loop_is_busy(node_factory, method, params):  # noqa: F811
    live = await node_factory(backend="leveldb")
    await live.wait_height(1)
    params = {k: live.addr(v) if k in ("address", "account") else v for k, v in params.items()}
    answered, reply = await _while_loop_blocked(live.url, _call(method, params))
    assert answered, f"{method} waited for the node's loop"
    assert "result" in reply or reply["error"]["code"] == NOT_FOUND  # an answer too


async def test_other_methods_still_wait_for_the_loop(node_factory):  # noqa: F811
    live = await node_factory(backend="leveldb")
    await live.wait_height(1)
    answered, reply = await _while_loop_blocked(live.url, _call("status"))
    assert not answered
    assert reply["result"]["sync_info"]["latest_block_height"] >= 1


async def test_without_the_thread_reads_wait_for_the_loop(node_factory):  # noqa: F811
    live = await node_factory(backend="leveldb", overrides={("rpc", "reader_thread"): False})
    await live.wait_height(1)
    answered, reply = await _while_loop_blocked(
        live.url, _call("account", {"address": live.addr("buyer")}))
    assert not answered and "result" in reply


async def test_a_mixed_batch_is_answered_in_order(node_factory):  # noqa: F811
    """Reads answered on the thread and submissions on the loop come back in the order
    asked, and a read in the same body sees the committed state (not the pool's)."""
    live = await node_factory()
    await live.wait_height(1)
    buyer, merchant = live.addr("buyer"), live.addr("merchant")
    before = await live.rpc("account", address=buyer)
    tx = live.sign("buyer", T.TRANSFER, before["next_nonce"], [address_from_text(merchant), 5])
    batch = [_call("account", {"address": buyer}, 1),
             _call("broadcast_tx_sync", {"tx": tx}, 2),
             _call("status", None, 3), _call("account", {"address": buyer}, 4),
             {"jsonrpc": "2.0", "method": "account", "params": {"address": buyer}},
             _call("no_such_method", None, 5)]
    status, reply = await live.post(json.dumps(batch))
    assert status == 200
    assert [r["id"] for r in reply] == [1, 2, 3, 4, 5]
    assert reply[0]["result"]["balance"] == before["balance"]
    assert reply[1]["result"]["code"] == 0
    assert reply[4]["error"]["code"] == METHOD_NOT_FOUND
    # next_nonce counts the pooled (or by now committed) tx, answered from the snapshot
    after = await live.rpc("account", address=buyer)
    assert after["next_nonce"] == before["next_nonce"] + 1


async def test_websocket_notifications_cross_from_the_loop(node_factory):  # noqa: F811
    live = await node_factory()
    await live.wait_height(1)
    async with live.session.ws_connect(live.url + "websocket") as ws:
        await ws.send_json(_call("subscribe", {"stream": "new_block"}))
        assert "subscription" in (await ws.receive_json(timeout=10))["result"]
        note = await ws.receive_json(timeout=10)
        assert note["method"] == "subscription" and note["params"]["seq"] == 1
        await ws.send_json(_call("account", {"address": live.addr("buyer")}, 7))
        for _ in range(20):
            message = await ws.receive_json(timeout=10)
            if message.get("id") == 7:
                assert "balance" in message["result"]
                break
        else:
            pytest.fail("no answer to the account call over the WebSocket")
