"""A benchmark testnet: `chainmerce testnet` homes tuned for throughput, many funded accounts.

Before the first start every home's genesis.json is rewritten with thousands of funded
accounts (deterministic seeds), and config.toml gets short consensus timeouts, large
mempool limits and large RPC batches. Nodes run as detached processes (node.localnet).
"""

from __future__ import annotations

import json
import shutil
import socket
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from commerce_vm import GenesisParams
from core.address import address_from_pubkey, address_to_text
from core.hashing import sha256
from core.keys import PrivateKey
from node import localnet
from node.client import Client
from node.config import render_config
from node.genesis import Genesis, load_genesis
from node.testnet import TestnetManifest, ephemeral_port_floor, generate_testnet, load_manifest

CHAIN_ID = "chainmerce-bench"
ACCOUNT_BALANCE = 10**13
REWARDS_POOL = 10**15

# Throughput settings. The round-0 propose timeout stays generous: a proposer on a busy
# 2-core machine executing a 5000-tx block must not lose its round.
CONSENSUS = {"timeout_commit_ms": 10, "empty_block_interval_ms": 50,
             "timeout_propose_ms": 3000, "timeout_propose_delta_ms": 500,
             "timeout_prevote_ms": 1000, "timeout_precommit_ms": 1000,
             "max_block_txs": 5000}
MEMPOOL = {"max_txs": 50_000, "max_txs_per_sender": 10_000, "ttl_blocks": 100_000}
RPC = {"max_batch_requests": 1000, "max_body_bytes": 8 * 1024 * 1024}


@dataclass(frozen=True, slots=True)
class Account:
    key: PrivateKey
    address: bytes

    @property
    def text(self) -> str:
        return address_to_text(self.address)


def account(index: int) -> Account:
    key = PrivateKey(sha256(b"chainmerce-bench-account-%d" % index))
    return Account(key, address_from_pubkey(key.public_key))


def free_base_port(count: int, start: int = 20000) -> int:
    """A base port from which `2 * count` consecutive loopback ports are free now (below
    the ephemeral range, which the submitter's connections draw from)."""
    for base in range(start, ephemeral_port_floor() - 2 * count, 2 * count + 7):
        if all(_port_free(p) for p in range(base, base + 2 * count)):
            return base
    raise RuntimeError("no free loopback port range")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def build(root: Path, validators: int, full_nodes: int, accounts: list[Account],
          *, consensus: dict[str, int] | None = None) -> TestnetManifest:
    """Create the testnet under `root` (removed first if it is a previous benchmark's)."""
    if root.exists():
        if not (root / "testnet.json").exists():
            raise RuntimeError(f"{root} exists and is not a benchmark testnet; not touching it")
        shutil.rmtree(root)
    count = validators + full_nodes
    base = free_base_port(count)
    ports = [(base + 2 * i, base + 2 * i + 1) for i in range(count)]
    timeouts = {k: v for k, v in {**CONSENSUS, **(consensus or {})}.items()
                if not k.startswith("max_block")}
    manifest = generate_testnet(root, validators, full_nodes, chain_id=CHAIN_ID, ports=ports,
                                consensus=timeouts)
    block_limits = {k: v for k, v in {**CONSENSUS, **(consensus or {})}.items()
                    if k.startswith("max_block")}
    for node in manifest.nodes:
        home = manifest.home(node)
        _fund(home / "config" / "genesis.json", accounts)
        _tune(home / "config" / "config.toml", {("consensus", k): v
                                                for k, v in block_limits.items()})
    return load_manifest(root)


def _fund(path: Path, accounts: list[Account]) -> None:
    genesis = load_genesis(path)
    params = genesis.params.to_dict()
    balances = dict(params["initial_balances"])
    balances.update({a.text: ACCOUNT_BALANCE for a in accounts})
    params["initial_balances"] = balances
    params["rewards_pool"] = REWARDS_POOL
    params["max_ship_within"] = 1_000_000
    params["max_confirm_within"] = 1_000_000
    updated = Genesis(genesis.genesis_time_ms, genesis.initial_height,
                      GenesisParams.from_dict(params))
    path.write_text(updated.to_json())


def _tune(path: Path, extra: dict[tuple[str, str], Any]) -> None:
    current = tomllib.loads(path.read_text())
    overrides: dict[tuple[str, str], Any] = {
        (section, key): value for section, table in current.items()
        for key, value in table.items()}
    overrides.update({("mempool", k): v for k, v in MEMPOOL.items()})
    overrides.update({("rpc", k): v for k, v in RPC.items()})
    overrides.update({("node", "log_level"): "warning"})
    overrides.update(extra)
    path.write_text(render_config(overrides))


def start(root: Path, names: list[str] | None = None) -> dict[str, int]:
    """Start nodes (all by default); returns name -> pid."""
    rows = localnet.up(root, names, timeout=60)
    return {r["node"]: r["pid"] for r in rows}


def stop(root: Path) -> None:
    localnet.down(root, grace=15)


def client(manifest: TestnetManifest, index: int = 0, timeout: float = 30.0) -> Client:
    return Client(manifest.nodes[index].rpc_url, timeout=timeout)


def height(manifest: TestnetManifest, index: int = 0) -> int:
    return int(client(manifest, index).call("status")["sync_info"]["latest_block_height"])


def manifest_json(manifest: TestnetManifest) -> str:
    return json.dumps(manifest.to_dict())
