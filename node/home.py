"""A node's home directory: where `init` writes and `start` reads.

    <home>/config/config.toml          node settings (documented defaults)
    <home>/config/genesis.json         the chain's genesis
    <home>/config/node_key.json        p2p identity key (0600)
    <home>/config/validator_key.json   consensus signing key (0600)
    <home>/data/chain.db/              LevelDB: blocks, commits, state, tx index
    <home>/data/signing_state          last signed height/round/step (double-sign guard)
    <home>/data/consensus.wal          consensus inputs of the height in progress
    <home>/keyring/                    passphrase-encrypted account keys
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from commerce_vm import GenesisParams
from commerce_vm.params import fees_by_name
from core.address import address_from_pubkey, address_to_text
from core.keys import PrivateKey, validate_chain_id
from node.config import render_config
from node.genesis import Genesis
from node.keystore import Keystore
from storage.fileutil import atomic_write

DEV_ACCOUNTS = ("merchant", "buyer", "arbiter")
DEV_BALANCE = 1_000_000_000
DEV_REWARDS_POOL = 100_000_000


class HomeError(Exception):
    """A home directory that cannot be created or used; one line."""


@dataclass(frozen=True, slots=True)
class Home:
    root: Path

    @property
    def config_file(self) -> Path:
        return self.root / "config" / "config.toml"

    @property
    def genesis_file(self) -> Path:
        return self.root / "config" / "genesis.json"

    @property
    def node_key_file(self) -> Path:
        return self.root / "config" / "node_key.json"

    @property
    def validator_key_file(self) -> Path:
        return self.root / "config" / "validator_key.json"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "chain.db"

    @property
    def signing_state_file(self) -> Path:
        return self.data_dir / "signing_state"

    @property
    def wal_file(self) -> Path:
        return self.data_dir / "consensus.wal"

    def is_initialized(self) -> bool:
        return self.config_file.exists() and self.genesis_file.exists()


def write_key_file(path: Path, key: PrivateKey) -> None:
    document = {"public_key": key.public_key.hex(),
                "address": address_to_text(address_from_pubkey(key.public_key)),
                "seed": key.seed.hex()}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, (json.dumps(document, indent=2) + "\n").encode(), mode=0o600)


def read_key_file(path: Path) -> PrivateKey:
    try:
        document = json.loads(Path(path).read_text())
        key = PrivateKey(bytes.fromhex(document["seed"]))
    except FileNotFoundError:
        raise HomeError(f"{path}: missing (run `chainmerce init` first)") from None
    except (OSError, ValueError, KeyError, TypeError):
        raise HomeError(f"{path}: not a valid key file") from None
    if document.get("public_key") != key.public_key.hex():
        raise HomeError(f"{path}: public key does not match the seed")
    return key


def dev_params(chain_id: str, validators: list[tuple[bytes, int]],
               accounts: dict[str, bytes]) -> GenesisParams:
    balances = {addr: DEV_BALANCE for addr in accounts.values()}
    return GenesisParams(
        chain_id=chain_id,
        validators=tuple(sorted(validators)),
        initial_balances=tuple(sorted(balances.items())),
        arbiters=tuple(sorted(a for n, a in accounts.items() if n == "arbiter")),
        min_fees=fees_by_name({}, default=10),
        rewards_pool=DEV_REWARDS_POOL,
        default_ship_within=100,
        default_confirm_within=200,
    )


def init_home(root: Path, chain_id: str, *, dev: bool, moniker: str | None = None,
              config_overrides: dict[tuple[str, str], Any] | None = None,
              genesis: Genesis | None = None, validator_power: int = 10) -> dict[str, Any]:
    """Create config, keys and (unless given) a one-validator genesis. Refuses to touch an
    existing home: overwriting a validator key could make the node double-sign."""
    validate_chain_id(chain_id)
    home = Home(Path(root))
    if home.config_file.exists() or home.validator_key_file.exists():
        raise HomeError(f"{home.root} is already initialized; choose another --home")
    (home.root / "config").mkdir(parents=True, exist_ok=True)
    home.data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(home.root / "config", 0o700)
    node_key, validator_key = PrivateKey.generate(), PrivateKey.generate()
    write_key_file(home.node_key_file, node_key)
    write_key_file(home.validator_key_file, validator_key)
    accounts: dict[str, bytes] = {}
    if dev:
        keystore = Keystore(home.root)
        for name in DEV_ACCOUNTS:
            info = keystore.create(name, None, encrypted=False)
            accounts[name] = address_from_pubkey(info.public_key)
    if genesis is None:
        params = dev_params(chain_id, [(validator_key.public_key, validator_power)], accounts)
        genesis = Genesis(int(time.time() * 1000), 1, params)
    overrides = {("node", "moniker"): moniker or home.root.name or "chainmerce-node"}
    overrides.update(config_overrides or {})
    home.config_file.write_text(render_config(overrides))
    home.genesis_file.write_text(genesis.to_json())
    return {"home": str(home.root), "chain_id": genesis.chain_id,
            "validator_address": address_to_text(address_from_pubkey(validator_key.public_key)),
            "validator_pub_key": validator_key.public_key.hex(),
            "node_id": address_from_pubkey(node_key.public_key).hex(),
            "dev_accounts": {n: address_to_text(a) for n, a in accounts.items()}}
