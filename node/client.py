"""A small synchronous JSON-RPC client (stdlib only), used by the CLI and by tests."""

from __future__ import annotations

import itertools
import json
import urllib.error
import urllib.request
from typing import Any

DEFAULT_URL = "http://127.0.0.1:26657"


class ClientError(Exception):
    """An error answer from the node, or no answer at all.

    `code` is the JSON-RPC error code (None when the node could not be reached); `data` is
    the error's data member, e.g. {"name": "insufficient_balance", "rule": "..."}.
    """

    def __init__(self, message: str, code: int | None = None, data: Any = None):
        super().__init__(message)
        self.code = code
        self.data = data


class Client:
    def __init__(self, url: str = DEFAULT_URL, timeout: float = 35.0):
        self.url = url.rstrip("/") + "/"
        self.timeout = timeout
        self._ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> Any:
        body = json.dumps({"jsonrpc": "2.0", "id": next(self._ids), "method": method,
                           "params": {k: v for k, v in params.items() if v is not None}})
        request = urllib.request.Request(
            self.url, data=body.encode(), headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ClientError(f"cannot reach node at {self.url}: {reason}") from None
        try:
            reply = json.loads(raw)
        except ValueError:
            raise ClientError(f"node at {self.url} answered with something that is not JSON") from None
        if not isinstance(reply, dict):
            raise ClientError("unexpected reply from node")
        if "error" in reply:
            error = reply["error"] or {}
            raise ClientError(str(error.get("message", "unknown error")), error.get("code"),
                              error.get("data"))
        return reply.get("result")
