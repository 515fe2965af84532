"""The JSON-RPC dispatcher: request shapes, params, batches and error codes, without I/O."""

import json

import pytest

from core.address import address_to_text
from node.rpc.dispatcher import Dispatcher, Method
from node.rpc.errors import INTERNAL_ERROR, METHOD_NOT_FOUND, NOT_FOUND, RPCError, not_found
from node.rpc.params import Param


def make_dispatcher() -> Dispatcher:
    d = Dispatcher(max_batch_requests=3)

    def echo(height, who, data):
        return {"height": height, "who": who.hex() if who else None,
                "data": data.hex() if data else None}

    async def missing():
        raise not_found("block")

    def broken():
        raise ZeroDivisionError("boom")

    d.register(Method("echo", echo, (
        Param("height", "int", "a height", required=True, minimum=1, maximum=100),
        Param("who", "address", "an account"),
        Param("data", "hex", "bytes", max_len=4),
    ), "echo params back"))
    d.register(Method("missing", missing, (), "always not found"))
    d.register(Method("broken", broken, (), "raises"))
    return d


async def call(d, payload):
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    reply = await d.handle_body(raw)
    return json.loads(reply) if reply is not None else None


ADDR = address_to_text(b"\x01" * 20)


async def test_named_and_positional_params():
    d = make_dispatcher()
    r = await call(d, {"jsonrpc": "2.0", "id": 1, "method": "echo",
                       "params": {"height": 5, "who": ADDR, "data": "0xabcd"}})
    assert r == {"jsonrpc": "2.0", "id": 1,
                 "result": {"height": 5, "who": "01" * 20, "data": "abcd"}}
    r = await call(d, {"jsonrpc": "2.0", "id": "x", "method": "echo", "params": ["7"]})
    assert r["result"]["height"] == 7


@pytest.mark.parametrize(
    "payload, code",
    [
        (b"{not json", -32700),
        (b"\xff\xfe", -32700),
        ({"jsonrpc": "1.0", "id": 1, "method": "echo"}, -32600),
        ({"jsonrpc": "2.0", "id": 1}, -32600),
        ({"jsonrpc": "2.0", "id": [1], "method": "echo"}, -32600),
        ([], -32600),
        ({"jsonrpc": "2.0", "id": 1, "method": "nope"}, -32601),
        ({"jsonrpc": "2.0", "id": 1, "method": "echo"}, -32602),
        ({"jsonrpc": "2.0", "id": 1, "method": "echo", "params": {"height": 0}}, -32602),
        ({"jsonrpc": "2.0", "id": 1, "method": "echo", "params": {"height": True}}, -32602),
        ({"jsonrpc": "2.0", "id": 1, "method": "echo", "params": {"height": 1, "x": 1}}, -32602),
        ({"jsonrpc": "2.0", "id": 1, "method": "echo", "params": {"height": 1, "who": "cm1x"}},
         -32602),
        ({"jsonrpc": "2.0", "id": 1, "method": "echo", "params": {"height": 1, "data": "zz"}},
         -32602),
        ({"jsonrpc": "2.0", "id": 1, "method": "echo",
          "params": {"height": 1, "data": "00" * 5}}, -32602),
        ({"jsonrpc": "2.0", "id": 1, "method": "echo", "params": [1, None, None, 4]}, -32602),
        ({"jsonrpc": "2.0", "id": 1, "method": "echo", "params": "height"}, -32602),
        ({"jsonrpc": "2.0", "id": 1, "method": "missing"}, NOT_FOUND),
        ({"jsonrpc": "2.0", "id": 1, "method": "broken"}, -32603),
    ],
)
async def test_errors_have_stable_codes(payload, code):
    r = await call(make_dispatcher(), payload)
    assert r["error"]["code"] == code
    assert "Traceback" not in r["error"]["message"]


async def test_batches_and_notifications():
    d = make_dispatcher()
    r = await call(d, [
        {"jsonrpc": "2.0", "id": 1, "method": "echo", "params": [1]},
        {"jsonrpc": "2.0", "method": "echo", "params": [2]},  # notification: no reply
        {"jsonrpc": "2.0", "id": 3, "method": "nope"},
    ])
    assert [x["id"] for x in r] == [1, 3]
    assert r[1]["error"]["code"] == -32601
    assert await call(d, {"jsonrpc": "2.0", "method": "echo", "params": [1]}) is None
    too_many = [{"jsonrpc": "2.0", "id": i, "method": "echo", "params": [1]} for i in range(4)]
    assert (await call(d, too_many))["error"]["code"] == -32600


def test_duplicate_registration_refused():
    d = make_dispatcher()
    with pytest.raises(ValueError):
        d.register(Method("echo", lambda: 1, (), ""))


def test_rpc_error_json_carries_data():
    assert RPCError(2001, "bad", {"name": "x"}).to_json() == {
        "code": 2001, "message": "bad", "data": {"name": "x"}}


async def test_prepare_hooks_see_the_whole_body_first_and_cannot_cost_an_answer():
    d = make_dispatcher()
    seen: list[tuple[str, list]] = []
    calls: list[int] = []

    def counted(height):
        calls.append(height)
        return height

    d.register(Method("count", counted, (Param("height", "int", "h", required=True),), "c"))

    async def record(requests):
        seen.append(("hook", [r["params"]["height"] for r in requests]))
        assert not calls, "a request ran before the hook saw the body"

    async def explode(requests):
        raise RuntimeError("hook bug")

    d.prepare += [record, explode]
    batch = [{"jsonrpc": "2.0", "id": i, "method": "count", "params": {"height": i}}
             for i in (1, 2, 3)]
    replies = await call(d, batch)
    assert [r["result"] for r in replies] == [1, 2, 3]
    assert seen == [("hook", [1, 2, 3])] and calls == [1, 2, 3]
    single = await call(d, {"jsonrpc": "2.0", "id": 9, "method": "count", "params": {"height": 7}})
    assert single["result"] == 7 and seen[-1] == ("hook", [7])


async def test_a_server_thread_answers_reads_itself_and_hands_the_rest_to_the_node_loop():
    """With node_loop set (the RPC thread), reads_committed methods run inside read_scope on
    the calling loop; every other request runs on the node's loop; answers keep the order."""
    import asyncio
    import contextlib
    import threading

    node_loop = asyncio.new_event_loop()
    node_thread = threading.Thread(target=node_loop.run_forever, daemon=True)
    node_thread.start()
    ran_on: dict[str, str] = {}
    scopes: list[str] = []

    def where(name):
        def handler():
            ran_on[name] = threading.current_thread().name
            return name
        return handler

    @contextlib.contextmanager
    def read_scope():
        scopes.append("open")
        yield
        scopes.append("closed")

    d = Dispatcher(max_batch_requests=8, node_loop=node_loop, read_scope=read_scope)
    d.register(Method("read", where("read"), (), "a read", reads_committed=True))
    d.register(Method("write", where("write"), (), "not a read"))
    try:
        reply = await call(d, [{"jsonrpc": "2.0", "id": i, "method": m}
                               for i, m in enumerate(["write", "read", "nope", "read"])])
        assert [(r["id"], r.get("result")) for r in reply] == \
            [(0, "write"), (1, "read"), (2, None), (3, "read")]
        assert reply[2]["error"]["code"] == METHOD_NOT_FOUND
        assert ran_on == {"read": threading.current_thread().name,
                          "write": node_thread.name}
        assert scopes == ["open", "closed"]  # one snapshot for the body's reads
        # without a read scope, reads go to the node's loop as well
        d.read_scope = None
        ran_on.clear()
        assert (await call(d, {"jsonrpc": "2.0", "id": 1, "method": "read"}))["result"] == "read"
        assert ran_on == {"read": node_thread.name}

        @contextlib.contextmanager
        def closed_store():
            raise RuntimeError("store is closed")
            yield

        d.read_scope = closed_store  # a snapshot that cannot open: an error, not a crash
        reply = await call(d, [{"jsonrpc": "2.0", "id": 1, "method": "read"},
                               {"jsonrpc": "2.0", "method": "read"},
                               {"jsonrpc": "2.0", "id": 2, "method": "write"}])
        assert [(r["id"], r.get("error", {}).get("code")) for r in reply] == \
            [(1, INTERNAL_ERROR), (2, None)]
    finally:
        node_loop.call_soon_threadsafe(node_loop.stop)
        node_thread.join()
        node_loop.close()
    # the node's loop is gone: what it would have run is answered, not left hanging
    d.read_scope = read_scope
    reply = await call(d, [{"jsonrpc": "2.0", "id": 1, "method": "write"},
                           {"jsonrpc": "2.0", "id": 2, "method": "read"}])
    assert reply[0]["error"]["code"] == INTERNAL_ERROR and reply[1]["result"] == "read"
