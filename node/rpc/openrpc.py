"""rpc.discover: an OpenRPC 1.2 document built from the registered methods.

Params come from the same `Param` declarations the dispatcher enforces, so the document
cannot drift from behaviour. Result schemas are given for the answers integrators use
most; the others say `object`. Every method lists the errors it can answer: the standard
JSON-RPC ones, the node's own, and for tx submission the commerce VM's stable codes.
`check_schema` is a small validator of the JSON Schema subset used here (tests and client
code can validate calls without a schema library).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import commerce_vm as vm
from node.rpc import errors as E
from node.rpc.dispatcher import Dispatcher, Method

if TYPE_CHECKING:
    from node.node import Node

OPENRPC_VERSION = "1.2.6"

STANDARD_ERRORS = {
    E.PARSE_ERROR: "parse error: the body is not JSON",
    E.INVALID_REQUEST: "not a JSON-RPC 2.0 request (or a batch too large)",
    E.METHOD_NOT_FOUND: "no such method",
    E.INVALID_PARAMS: "a param is missing, unknown, of the wrong type or out of range",
    E.INTERNAL_ERROR: "the node failed to answer",
}
NODE_ERRORS = {
    E.NOT_FOUND: "the block, tx, listing or order does not exist",
    E.MEMPOOL_FULL: "the mempool is full",
    E.TX_ALREADY_KNOWN: "the tx is already in the mempool or the chain",
    E.COMMIT_TIMEOUT: "the tx was not committed in time; it may still be",
    E.NODE_NOT_READY: "the node is starting or shutting down",
    E.TOO_MANY_REQUESTS: "a per-client limit was reached",
}
# Errors any method with params can answer, and the ones every method can.
ALWAYS = (E.PARSE_ERROR, E.INVALID_REQUEST, E.METHOD_NOT_FOUND, E.INTERNAL_ERROR)
LOOKUPS = ("block", "block_by_hash", "commit", "tx", "listing", "order", "provenance")

HEX64 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
ADDRESS = {"type": "string", "pattern": "^cm1[02-9ac-hj-np-z]{38}$"}
INT = {"type": "integer"}
NAT = {"type": "integer", "minimum": 0}
STR = {"type": "string"}


def _obj(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "object", "required": sorted(required),
            "properties": {**required, **(optional or {})}}


HEADER = _obj({"chain_id": STR, "height": NAT, "time_ms": NAT, "hash": HEX64,
               "prev_hash": HEX64, "txs_root": HEX64, "app_hash": HEX64, "proposer": ADDRESS})
EVENT = _obj({"kind": STR, "attributes": {"type": "object"}})
TX_RESULT = _obj({"code": INT, "name": STR, "message": STR, "fee_charged": NAT, "type": STR,
                  "events": {"type": "array", "items": EVENT}})
NULLABLE_INT = {"type": ["integer", "null"]}
RESULT_SCHEMAS: dict[str, dict[str, Any]] = {
    "status": _obj({"node_info": _obj({"moniker": STR, "chain_id": STR, "version": STR}),
                    "sync_info": _obj({"latest_block_height": NAT, "latest_block_hash": STR,
                                       "catching_up": {"type": "boolean"}}),
                    "validator_info": _obj({"address": ADDRESS, "pub_key": STR, "power": NAT}),
                    "consensus": _obj({"height": NAT, "round": NAT, "step": STR})}),
    "health": _obj({"healthy": {"type": "boolean"}, "height": NAT,
                    "seconds_since_last_commit": {"type": ["number", "null"]},
                    "fault": {"type": ["string", "null"]},
                    "catching_up": {"type": "boolean"}, "stalled": {"type": "boolean"}}),
    "block": _obj({"header": HEADER, "txs": {"type": "array"}, "evidence": {"type": "array"},
                   "last_commit": {"type": ["object", "null"]}}),
    "blockchain": _obj({"last_height": NAT, "headers": {"type": "array", "items": HEADER}}),
    "tx": _obj({"hash": HEX64, "height": NAT, "index": NAT, "tx": {"type": "object"},
                "result": {"type": "object"}}),
    "tx_search": _obj({"txs": {"type": "array"}, "next_cursor": {"type": ["string", "null"]}}),
    "broadcast_tx_async": _obj({"hash": HEX64}),
    "broadcast_tx_sync": _obj({"hash": HEX64, "code": INT}),
    "broadcast_tx_commit": _obj({"hash": HEX64, "height": NAT, "index": NAT, "code": INT,
                                 "name": STR, "message": STR,
                                 "events": {"type": "array", "items": EVENT}}),
    "num_unconfirmed_txs": _obj({"n_txs": NAT, "total_bytes": NAT}),
    "account": _obj({"address": ADDRESS, "balance": NAT, "nonce": NAT, "next_nonce": NAT}),
    "listing": _obj({"id": NAT, "merchant": ADDRESS, "title": STR, "price": NAT,
                     "quantity": NAT, "active": {"type": "boolean"}}),
    "order": _obj({"id": NAT, "listing_id": NAT, "buyer": ADDRESS, "merchant": ADDRESS,
                   "status": STR, "quantity": NAT, "amount": NAT}),
    "listings": _obj({"items": {"type": "array"}, "next_cursor": NULLABLE_INT}),
    "orders": _obj({"items": {"type": "array"}, "next_cursor": NULLABLE_INT}),
    "subscribe": _obj({"subscription": NAT}),
    "unsubscribe": {"type": "boolean"},
    "unsubscribe_all": _obj({"unsubscribed": NAT}),
    "rpc.discover": _obj({"openrpc": STR, "info": {"type": "object"},
                          "methods": {"type": "array"}}),
}


def error_objects() -> dict[int, str]:
    """Every error code the API can answer, with what it means."""
    codes = {**STANDARD_ERRORS, **NODE_ERRORS}
    for kind in vm.ALL_ERRORS:
        codes[kind.code] = f"{kind.name}: {kind.rule}"
    return codes


def method_errors(method: Method) -> list[int]:
    codes = list(ALWAYS)
    if method.params:
        codes.append(E.INVALID_PARAMS)
    if method.name in LOOKUPS:
        codes.append(E.NOT_FOUND)
    codes += [c for c in method.errors if c not in codes]
    return codes


def method_object(method: Method, all_errors: dict[int, str]) -> dict[str, Any]:
    params = []
    for p in method.params:
        schema = p.json_schema()
        if p.default is not None:
            schema["default"] = p.default
        params.append({"name": p.name, "summary": p.doc, "required": p.required,
                       "schema": schema})
    return {
        "name": method.name,
        "summary": method.summary,
        "paramStructure": "either",
        "params": params,
        "result": {"name": "result", "summary": method.result or method.summary,
                   "schema": RESULT_SCHEMAS.get(method.name, {"type": "object"})},
        "errors": [{"code": c, "message": all_errors.get(c, "error")}
                   for c in method_errors(method)],
    }


def openrpc_document(dispatcher: Dispatcher, version: str, chain_id: str) -> dict[str, Any]:
    all_errors = error_objects()
    return {
        "openrpc": OPENRPC_VERSION,
        "info": {"title": "chainmerce JSON-RPC", "version": version,
                 "description": f"Node API of chain {chain_id}: HTTP POST / and WebSocket "
                                "/websocket (subscriptions). See docs/integrators.md."},
        "servers": [{"name": "node", "url": "/"}],
        "methods": [method_object(m, all_errors)
                    for m in sorted(dispatcher.methods.values(), key=lambda m: m.name)],
        "components": {"errors": {str(code): {"code": code, "message": message}
                                  for code, message in sorted(all_errors.items())}},
    }


def params_schema(method: dict[str, Any]) -> dict[str, Any]:
    """The by-name params of an OpenRPC method object as one object schema."""
    return {"type": "object", "additionalProperties": False,
            "required": [p["name"] for p in method["params"] if p["required"]],
            "properties": {p["name"]: p["schema"] for p in method["params"]}}


_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def check_schema(value: Any, schema: dict[str, Any], where: str = "$") -> list[str]:
    """Problems of `value` against the JSON Schema subset used by this document (type,
    required, properties, additionalProperties, items, minimum, maximum, pattern,
    maxLength). An empty list means it validates."""
    problems: list[str] = []
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(_is(value, k) for k in kinds):
            return [f"{where}: expected {'/'.join(kinds)}, got {type(value).__name__}"]
    if isinstance(value, dict):
        for key in schema.get("required", ()):
            if key not in value:
                problems.append(f"{where}: missing {key}")
        props = schema.get("properties", {})
        for key, item in value.items():
            if key in props:
                problems += check_schema(item, props[key], f"{where}.{key}")
            elif schema.get("additionalProperties") is False:
                problems.append(f"{where}: unexpected {key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            problems += check_schema(item, schema["items"], f"{where}[{i}]")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            problems.append(f"{where}: below {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            problems.append(f"{where}: above {schema['maximum']}")
    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            problems.append(f"{where}: longer than {schema['maxLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            problems.append(f"{where}: does not match {schema['pattern']}")
    return problems


def _is(value: Any, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES[kind])


def register(d: Dispatcher, node: Node) -> None:
    from node.rpc.methods import _version

    chain_id = node.chain_id

    def discover() -> dict[str, Any]:
        return openrpc_document(d, _version(), chain_id)

    d.register(Method("rpc.discover", discover, (),
                      "This API as an OpenRPC document: every method, its params, results "
                      "and error codes."))
