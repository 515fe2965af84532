"""JSON-RPC error codes. The standard ones, plus the node's own (documented in docs/errors.md).

Transaction rejections use the commerce VM's stable code as the JSON-RPC error code, with
`data = {"name": ..., "rule": ...}`, so a client sees the same number the chain records.
"""

from __future__ import annotations

from typing import Any

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

# Node errors live in the implementation-defined server range.
NOT_FOUND = -32001
MEMPOOL_FULL = -32002
TX_ALREADY_KNOWN = -32003
COMMIT_TIMEOUT = -32004
NODE_NOT_READY = -32005
TOO_MANY_REQUESTS = -32006


class RPCError(Exception):
    def __init__(self, code: int, message: str, data: Any = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def not_found(what: str) -> RPCError:
    return RPCError(NOT_FOUND, f"{what} not found")


def invalid_params(message: str) -> RPCError:
    return RPCError(INVALID_PARAMS, f"invalid params: {message}")
