"""`chainmerce testnet`: the homes of an N-validator network (plus full nodes) on loopback.

    DIR/testnet.json     the manifest: chain id and, per node, its home, role, ports, ids
    DIR/node0 .. nodeK   node homes (node/home.py layout); validators first, then full nodes

Every home gets the SAME genesis.json: the N validator keys with power 10 each, and the dev
accounts merchant, buyer and arbiter funded. The dev key files (unencrypted, local use only)
are created in node0's keyring and copied into every home, so the CLI works against any
node. Node i listens on 127.0.0.1, RPC on base_port + 2i and p2p on base_port + 2i + 1, and
lists every other node as a persistent peer ("<node id hex>@127.0.0.1:<p2p port>"). Full
nodes have a validator key file like any home, but it is not in the genesis validator set.

The homes are built in a temporary sibling directory and renamed into place at the end, so
a failure never leaves half a testnet behind, and an existing non-empty DIR is refused.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from core.address import address_from_pubkey, address_to_text
from core.keys import validate_chain_id
from node.config import render_config
from node.genesis import Genesis
from node.home import DEV_ACCOUNTS, Home, HomeError, dev_params, init_home, read_key_file
from node.keystore import KEYRING_DIR

MANIFEST = "testnet.json"
MANIFEST_VERSION = 1
DEFAULT_CHAIN_ID = "chainmerce-localnet"
DEFAULT_BASE_PORT = 26600
VALIDATOR_POWER = 10
MAX_NODES = 64
LOOPBACK = "127.0.0.1"

# Consensus timeouts for processes on one machine talking over loopback: messages arrive in
# well under a millisecond, so the defaults (sized for a WAN) would only slow rounds that
# fail down. Round 0 still gives the proposer a second, which covers a busy 2-core machine
# running several Python nodes; later rounds grow by the deltas. Idle blocks come about
# every half second (empty_block_interval_ms + timeout_commit_ms).
LOCALNET_CONSENSUS: dict[str, int] = {
    "timeout_propose_ms": 1000,
    "timeout_propose_delta_ms": 250,
    "timeout_prevote_ms": 300,
    "timeout_prevote_delta_ms": 150,
    "timeout_precommit_ms": 300,
    "timeout_precommit_delta_ms": 150,
    "timeout_commit_ms": 100,
    "empty_block_interval_ms": 400,
}


class TestnetError(Exception):
    """Testnet arguments or an output directory that cannot be used; one line."""

    __test__ = False  # not a pytest class


@dataclass(frozen=True, slots=True)
class TestnetNode:
    __test__ = False

    index: int
    name: str  # directory name under the testnet dir: node0, node1, ...
    role: str  # "validator" or "full"
    rpc_port: int
    p2p_port: int
    node_id: str  # hex of address_from_pubkey(node key)
    validator_address: str  # cm1... (meaningful for validators only)

    @property
    def is_validator(self) -> bool:
        return self.role == "validator"

    @property
    def rpc_url(self) -> str:
        return f"http://{LOOPBACK}:{self.rpc_port}"

    @property
    def peer_address(self) -> str:
        return f"{self.node_id}@{LOOPBACK}:{self.p2p_port}"


@dataclass(frozen=True, slots=True)
class TestnetManifest:
    __test__ = False

    root: Path
    chain_id: str
    nodes: tuple[TestnetNode, ...]
    dev_accounts: dict[str, str]  # dev key name -> cm1 address

    def home(self, node: TestnetNode) -> Path:
        return self.root / node.name

    def to_dict(self) -> dict[str, Any]:
        return {"version": MANIFEST_VERSION, "chain_id": self.chain_id,
                "dev_accounts": self.dev_accounts,
                "nodes": [asdict(n) for n in self.nodes]}


def ephemeral_port_floor() -> int:
    """The lowest port the kernel may hand out as a connection's source port. Fixed
    listen ports chosen below it can never be taken by some process's outgoing connection
    while their node is down (a restarted node would fail to bind)."""
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def port_plan(count: int, base_port: int) -> list[tuple[int, int]]:
    """(rpc, p2p) ports of each node: base + 2i and base + 2i + 1."""
    if base_port < 1024 or base_port + 2 * count - 1 > 65535:
        raise TestnetError(f"--base-port {base_port}: the {2 * count} ports from it must lie "
                           "in 1024..65535")
    return [(base_port + 2 * i, base_port + 2 * i + 1) for i in range(count)]


def _check_args(validators: int, full_nodes: int, chain_id: str,
                ports: list[tuple[int, int]]) -> None:
    if validators < 1:
        raise TestnetError("--validators must be at least 1")
    if full_nodes < 0:
        raise TestnetError("--full-nodes must not be negative")
    if validators + full_nodes > MAX_NODES:
        raise TestnetError(f"at most {MAX_NODES} nodes in a testnet")
    try:
        validate_chain_id(chain_id)
    except ValueError as exc:
        raise TestnetError(f"--chain-id: {exc}") from None
    flat = [p for pair in ports for p in pair]
    if len(ports) != validators + full_nodes:
        raise TestnetError("one (rpc, p2p) port pair per node is required")
    if len(set(flat)) != len(flat) or not all(0 < p <= 65535 for p in flat):
        raise TestnetError("every node needs its own two ports in 1..65535")


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TestnetError(f"{out} already exists; refusing to overwrite it (choose a new --out "
                           "or remove it first)")


def generate_testnet(out: Path, validators: int, full_nodes: int = 0, *,
                     chain_id: str = DEFAULT_CHAIN_ID, base_port: int = DEFAULT_BASE_PORT,
                     ports: list[tuple[int, int]] | None = None,
                     consensus: dict[str, int] | None = None,
                     genesis_time_ms: int | None = None) -> TestnetManifest:
    """Write the testnet homes under `out` and return the manifest.

    `ports` (one (rpc, p2p) pair per node) replaces the base-port plan (tests pass free
    ports); `consensus` overrides [consensus] keys on top of LOCALNET_CONSENSUS."""
    out = Path(out).absolute()
    count = validators + full_nodes
    if ports is None:
        ports = port_plan(max(count, 0), base_port)
    _check_args(validators, full_nodes, chain_id, list(ports))
    _check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    timeouts = {**LOCALNET_CONSENSUS, **(consensus or {})}
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        manifest = _build(staging, out, validators, full_nodes, chain_id, list(ports), timeouts,
                          genesis_time_ms)
        if out.exists():
            out.rmdir()  # checked empty above
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _build(staging: Path, out: Path, validators: int, full_nodes: int, chain_id: str,
           ports: list[tuple[int, int]], timeouts: dict[str, int],
           genesis_time_ms: int | None) -> TestnetManifest:
    count = validators + full_nodes
    names = [f"node{i}" for i in range(count)]
    infos = []
    for i, name in enumerate(names):
        overrides = {("rpc", "listen"): f"{LOOPBACK}:{ports[i][0]}",
                     ("p2p", "listen"): f"{LOOPBACK}:{ports[i][1]}"}
        try:
            infos.append(init_home(staging / name, chain_id, dev=(i == 0), moniker=name,
                                   config_overrides=overrides))
        except HomeError as exc:
            raise TestnetError(str(exc)) from None
    # One genesis for all: the validators' keys and the dev accounts of node0.
    keyring0 = staging / names[0] / KEYRING_DIR
    accounts = {name: address_from_pubkey(bytes.fromhex(
        json.loads((keyring0 / f"{name}.json").read_text())["public_key"]))
        for name in DEV_ACCOUNTS}
    validator_keys = [read_key_file(Home(staging / names[i]).validator_key_file).public_key
                      for i in range(validators)]
    params = dev_params(chain_id, [(k, VALIDATOR_POWER) for k in validator_keys], accounts)
    genesis = Genesis(genesis_time_ms if genesis_time_ms is not None else int(time.time() * 1000),
                      1, params)
    nodes = tuple(
        TestnetNode(index=i, name=name, role="validator" if i < validators else "full",
                    rpc_port=ports[i][0], p2p_port=ports[i][1], node_id=info["node_id"],
                    validator_address=info["validator_address"])
        for i, (name, info) in enumerate(zip(names, infos, strict=True)))
    for node in nodes:
        home = Home(staging / node.name)
        home.genesis_file.write_text(genesis.to_json())
        peers = [other.peer_address for other in nodes if other.index != node.index]
        overrides: dict[tuple[str, str], Any] = {
            ("node", "moniker"): node.name,
            ("rpc", "listen"): f"{LOOPBACK}:{node.rpc_port}",
            ("p2p", "listen"): f"{LOOPBACK}:{node.p2p_port}",
            ("p2p", "persistent_peers"): peers,
        }
        overrides.update({("consensus", key): value for key, value in timeouts.items()})
        home.config_file.write_text(render_config(overrides))
        if node.index != 0:
            keyring = home.root / KEYRING_DIR
            keyring.mkdir(mode=0o700, exist_ok=True)
            for name in DEV_ACCOUNTS:
                shutil.copy2(keyring0 / f"{name}.json", keyring / f"{name}.json")
    manifest = TestnetManifest(out, chain_id, nodes,
                               {n: address_to_text(a) for n, a in accounts.items()})
    (staging / MANIFEST).write_text(json.dumps(manifest.to_dict(), indent=2) + "\n")
    return manifest


def load_manifest(root: Path) -> TestnetManifest:
    """The manifest of a testnet directory; TestnetError when `root` is not one."""
    root = Path(root).absolute()
    path = root / MANIFEST
    if not path.is_file():
        raise TestnetError(f"{root} is not a testnet directory (no {MANIFEST}; create one with "
                           "`chainmerce testnet --out DIR`)")
    try:
        data = json.loads(path.read_text())
        nodes = tuple(TestnetNode(**n) for n in data["nodes"])
        manifest = TestnetManifest(root, str(data["chain_id"]), nodes,
                                   dict(data["dev_accounts"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TestnetError(f"{path}: not a valid testnet manifest ({exc})") from None
    for node in nodes:
        if not Home(root / node.name).is_initialized():
            raise TestnetError(f"{root / node.name} is missing or not a node home")
    return manifest
