"""Shared helpers for the multi-process end-to-end tests.

A test initializes a node home in its tmp_path with `chainmerce init --dev`, starts
`chainmerce start --home H` as a real subprocess on a free loopback port, drives it through
the CLI (subprocesses) and checks it over JSON-RPC. Every node process is registered in a
fixture (import `node_homes_fixture` / `running_node_fixture`; they are named `node_homes` /
`running_node`) that kills it in a `finally`, so a failing test never leaves a node behind.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from node.client import Client, ClientError
from node.testnet import ephemeral_port_floor

REPO = Path(__file__).resolve().parent.parent
_SCRIPT = REPO / ".venv" / "bin" / "chainmerce"
# The installed console script when there is one; otherwise run cli.py with this Python.
CHAINMERCE: list[str] = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable,
                                                                  str(REPO / "cli.py")]
CLI_TIMEOUT = 60.0
READY_TIMEOUT = 30.0

# Fast blocks for tests: a 1-validator chain then makes several blocks per second.
FAST_CONSENSUS = {"timeout_commit_ms": 50, "empty_block_interval_ms": 200}


def free_port() -> int:
    """A free loopback port below the kernel's ephemeral range: a node killed and restarted
    on it cannot find it taken by some process's outgoing connection meanwhile."""
    floor = ephemeral_port_floor()
    for _ in range(1000):
        port = random.randrange(10000, floor)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port below the ephemeral range")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("CHAINMERCE_PASSPHRASE", None)  # a stray passphrase would change CLI behaviour
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_cli(*args: str, check: bool = True, timeout: float = CLI_TIMEOUT,
            ) -> subprocess.CompletedProcess[str]:
    """Run `chainmerce ARGS` and return the finished process (text mode)."""
    proc = subprocess.run([*CHAINMERCE, *args], capture_output=True, text=True,
                          timeout=timeout, env=_env(), cwd=REPO, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise AssertionError(f"chainmerce {' '.join(args)} exited {proc.returncode}:\n"
                             f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
    return proc


def cli_json(*args: str) -> Any:
    """Run a CLI command with --json, require success and parse its output."""
    return json.loads(run_cli(*args, "--json").stdout)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    """A CLI failure: non-zero exit, exactly one line on stderr, no traceback."""
    assert proc.returncode != 0, f"expected failure, got 0: {proc.stdout}"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {proc.stderr!r}"
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    line = lines[0]
    for needle in needles:
        assert needle.lower() in line.lower(), f"{needle!r} not in {line!r}"
    return line


def set_config(config_file: Path, section: str, values: dict[str, Any]) -> None:
    """Replace `key = value` lines of one section of a rendered config.toml."""
    lines = config_file.read_text().splitlines()
    current = ""
    pending = dict(values)
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            current = stripped[1:-1]
            continue
        match = re.match(r"^(\w+)\s*=", stripped)
        if current == section and match and match.group(1) in pending:
            key = match.group(1)
            lines[i] = f"{key} = {json.dumps(pending.pop(key))}"
    assert not pending, f"keys not found in [{section}]: {sorted(pending)}"
    config_file.write_text("\n".join(lines) + "\n")


@dataclass
class NodeHome:
    """An initialized home with its dev accounts, plus the node process when running."""

    path: Path
    port: int
    chain_id: str
    accounts: dict[str, str]  # dev key name -> cm1 address
    proc: subprocess.Popen | None = None
    log_path: Path = field(init=False)
    _log_file: Any = None
    starts: int = 0

    def __post_init__(self) -> None:
        self.log_path = self.path / "node.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config_file(self) -> Path:
        return self.path / "config" / "config.toml"

    def client(self, timeout: float = 35.0) -> Client:
        return Client(self.url, timeout=timeout)

    def seed(self, name: str) -> bytes:
        """Seed of an unencrypted dev key (the keyring file holds it as hex)."""
        document = json.loads((self.path / "keyring" / f"{name}.json").read_text())
        return bytes.fromhex(document["seed"])

    def cli(self, *args: str) -> Any:
        """`chainmerce ARGS --home H --json`, required to succeed; the parsed output."""
        return cli_json(*args, "--home", str(self.path))

    def cli_raw(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, "--home", str(self.path), check=False)

    # --- process ----------------------------------------------------------------------------

    def start(self, wait: bool = True) -> None:
        assert self.proc is None or self.proc.poll() is not None, "node already running"
        self.starts += 1
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 (closed in _reap)
        self._log_file.write(f"\n===== start #{self.starts} =====\n".encode())
        self._log_file.flush()
        self.proc = subprocess.Popen(
            [*CHAINMERCE, "start", "--home", str(self.path)], stdout=self._log_file,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=_env(), cwd=REPO)
        if wait:
            self.wait_ready()

    def wait_ready(self, min_height: int = 1, timeout: float = READY_TIMEOUT) -> dict[str, Any]:
        """Wait until RPC answers and the chain has at least min_height blocks."""
        deadline = time.monotonic() + timeout
        client = self.client(timeout=2.0)
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"node exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                status = client.call("status")
                if status["sync_info"]["latest_block_height"] >= min_height:
                    return status
            except ClientError as exc:
                last_error = exc
            time.sleep(0.05)
        raise AssertionError(f"node not ready in {timeout}s ({last_error}):\n{self.log_tail()}")

    def wait_height(self, height: int, timeout: float = 20.0) -> int:
        deadline = time.monotonic() + timeout
        client = self.client(timeout=2.0)
        while time.monotonic() < deadline:
            top = client.call("status")["sync_info"]["latest_block_height"]
            if top >= height:
                return top
            time.sleep(0.05)
        raise AssertionError(f"height {height} not reached in {timeout}s:\n{self.log_tail()}")

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait: the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"node ignored SIGTERM for {timeout}s:\n{self.log_tail()}") from None
        self._reap()
        return code

    def kill(self) -> None:
        """kill -9 (no clean shutdown at all)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._reap()

    def _reap(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def init_home(root: Path, *, chain_id: str = "chainmerce-e2e",
              consensus: dict[str, Any] | None = None) -> NodeHome:
    """`chainmerce init --dev` on a free loopback port, then fast consensus timeouts."""
    port = free_port()
    info = cli_json("init", "--home", str(root), "--dev", "--chain-id", chain_id,
                    "--rpc-listen", f"127.0.0.1:{port}",
                    "--p2p-listen", f"127.0.0.1:{free_port()}")
    home = NodeHome(root, port, info["chain_id"], dict(info["dev_accounts"]))
    set_config(home.config_file, "consensus", consensus or FAST_CONSENSUS)
    return home


@pytest.fixture(name="node_homes")
def node_homes_fixture() -> Iterator[list[NodeHome]]:
    """Register homes here; every node process left running is killed at teardown."""
    homes: list[NodeHome] = []
    try:
        yield homes
    finally:
        for home in homes:
            home.kill()


@pytest.fixture(name="running_node")
def running_node_fixture(tmp_path: Path, node_homes: list[NodeHome]) -> NodeHome:
    home = init_home(tmp_path / "home")
    node_homes.append(home)
    home.start()
    return home


# --- RPC helpers ------------------------------------------------------------------------------


def post_raw(url: str, body: bytes, timeout: float = 10.0,
             content_type: str = "application/json") -> tuple[int, Any]:
    """POST raw bytes; (HTTP status, parsed JSON body or None)."""
    request = urllib.request.Request(url.rstrip("/") + "/", data=body,
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    return status, (json.loads(raw) if raw else None)


def rpc_error(client: Client, method: str, **params: Any) -> ClientError:
    """Call a method that must fail; the ClientError (with .code and .data)."""
    with pytest.raises(ClientError) as info:
        client.call(method, **params)
    return info.value


def all_headers(client: Client, top: int) -> dict[int, dict[str, Any]]:
    """Headers of heights 1..top, fetched 20 at a time with `blockchain`."""
    headers: dict[int, dict[str, Any]] = {}
    high = top
    while high >= 1:
        page = client.call("blockchain", min_height=max(1, high - 19), max_height=high)
        for header in page["headers"]:
            headers[header["height"]] = header
        high -= 20
    assert sorted(headers) == list(range(1, top + 1)), "blockchain skipped heights"
    return headers


def check_chain_links(headers: dict[int, dict[str, Any]]) -> None:
    """Every header links to the previous block's hash."""
    for height in sorted(headers):
        if height - 1 in headers:
            assert headers[height]["prev_hash"] == headers[height - 1]["hash"], \
                f"block {height} does not link to block {height - 1}"


def batch_call(url: str, calls: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    """One JSON-RPC batch; the results in order (any error fails the test)."""
    body = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p}
            for i, (m, p) in enumerate(calls)]
    status, replies = post_raw(url, json.dumps(body).encode())
    assert status == 200 and isinstance(replies, list), (status, replies)
    by_id = {r["id"]: r for r in replies}
    assert all("result" in by_id[i] for i in range(len(calls))), replies
    return [by_id[i]["result"] for i in range(len(calls))]


def total_supply(url: str, addresses: list[str]) -> int:
    """Balances of the given accounts + escrow + rewards pool, read at one height.

    Blocks keep committing while a load runs, so the reads go in one batch framed by two
    `status` calls, retried until both name the same height (a consistent snapshot)."""
    calls = [("status", {}), ("rewards_pool", {})]
    calls += [("account", {"address": a}) for a in addresses] + [("status", {})]
    for _ in range(20):
        first, pool, *accounts, last = batch_call(url, calls)
        if first["sync_info"]["latest_block_height"] == last["sync_info"]["latest_block_height"]:
            return sum(a["balance"] for a in accounts) + pool["escrow"] + pool["pool"]
    raise AssertionError("no consistent snapshot in 20 tries")
