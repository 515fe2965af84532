"""rpc.discover: the OpenRPC document names every registered method with its params, result
and errors; real example calls validate against it (params and results), and calls the
node refuses do not."""

from __future__ import annotations

from typing import Any

import commerce_vm as vm
from commerce_vm import txtypes as T
from node.rpc.openrpc import check_schema, params_schema
from node.rpc.server import DISPATCHER
from tests.node_fixtures import LiveNode, live_node, node_factory  # noqa: F401

LISTING = [0, "Tea bowl", 250, 5, 0, 0, "Kyoto", b""]


def by_name(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in doc["methods"]}


async def test_every_registered_method_is_described(live_node: LiveNode):  # noqa: F811
    doc = await live_node.rpc("rpc.discover")
    assert doc["openrpc"].startswith("1.")
    methods = by_name(doc)
    registered = set(live_node.node.rpc.app[DISPATCHER].methods)
    assert set(methods) == registered
    assert {"subscribe", "unsubscribe", "rpc.discover", "status", "order"} <= registered
    all_codes = {int(c) for c in doc["components"]["errors"]}
    assert {k.code for k in vm.ALL_ERRORS} <= all_codes
    assert {-32700, -32600, -32601, -32602, -32603} <= all_codes
    for name, method in methods.items():
        assert method["summary"], name
        assert "schema" in method["result"], name
        codes = [e["code"] for e in method["errors"]]
        assert -32601 in codes and all(c in all_codes for c in codes), name
        if method["params"]:
            assert -32602 in codes, name
        for p in method["params"]:
            assert {"name", "schema", "required", "summary"} <= set(p), (name, p)
    # tx submission lists the VM's codes
    commit_codes = {e["code"] for e in methods["broadcast_tx_commit"]["errors"]}
    assert {k.code for k in vm.ALL_ERRORS} <= commit_codes


async def test_example_calls_validate_against_the_document(live_node: LiveNode):  # noqa: F811
    live = live_node
    doc = by_name(await live.rpc("rpc.discover"))
    tx = live.sign("merchant", T.LIST, 0, LISTING)
    examples: list[tuple[str, dict[str, Any]]] = [
        ("status", {}), ("health", {}), ("broadcast_tx_commit", {"tx": tx}),
        ("account", {"address": live.addr("buyer")}), ("listing", {"id": 1}),
        ("listings", {"merchant": live.addr("merchant"), "limit": 5}),
        ("orders", {"buyer": live.addr("buyer")}), ("block", {"height": 1}),
        ("blockchain", {"min_height": 1}), ("num_unconfirmed_txs", {}),
        ("rpc.discover", {}),
    ]
    for name, params in examples:
        method = doc[name]
        assert check_schema(params, params_schema(method)) == [], (name, params)
        result = await live.rpc(name, **params)
        assert check_schema(result, method["result"]["schema"]) == [], (name, result)
    tx_hash = (await live.rpc("tx_search", account=live.addr("merchant")))["txs"][0]["hash"]
    assert check_schema(await live.rpc("tx", hash=tx_hash), doc["tx"]["result"]["schema"]) == []

    # what the schema refuses, the node refuses too (same declarations)
    bad = [("listing", {"id": 0}), ("listing", {}), ("account", {"address": "cm1xyz"}),
           ("block", {"height": "tall"}), ("status", {"extra": 1}),
           ("tx", {"hash": "abcd"})]
    for name, params in bad:
        assert check_schema(params, params_schema(doc[name])) != [], (name, params)
        error = await live.error(name, params)
        assert error["code"] == -32602, (name, params, error)


def test_check_schema_catches_each_kind_of_problem():
    schema = {"type": "object", "required": ["a"], "additionalProperties": False,
              "properties": {"a": {"type": "integer", "minimum": 1, "maximum": 3},
                             "b": {"type": "string", "maxLength": 2, "pattern": "^x"},
                             "c": {"type": "array", "items": {"type": "boolean"}}}}
    assert check_schema({"a": 2, "b": "xy", "c": [True]}, schema) == []
    assert check_schema({"a": True}, schema)  # a bool is not an integer
    assert check_schema({}, schema)
    assert check_schema({"a": 4}, schema)
    assert check_schema({"a": 0}, schema)
    assert check_schema({"a": 1, "b": "xyz"}, schema)
    assert check_schema({"a": 1, "b": "y"}, schema)
    assert check_schema({"a": 1, "c": [1]}, schema)
    assert check_schema({"a": 1, "d": 1}, schema)
    assert check_schema([], schema)
