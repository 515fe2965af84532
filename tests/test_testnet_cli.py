"""`chainmerce testnet` and the process-free parts of `chainmerce localnet` (no node runs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

import node.testnet as testnet_mod
from cli import main
from core.address import address_from_pubkey, address_to_text
from node.config import load_config
from node.genesis import load_genesis
from node.home import DEV_ACCOUNTS, Home, read_key_file
from node.localnet import PID_FILE, down, status, status_table
from node.testnet import (
    LOCALNET_CONSENSUS,
    MANIFEST,
    TestnetError,
    generate_testnet,
    load_manifest,
)


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def one_line_error(result, *needles: str) -> str:
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def net(tmp_path_factory) -> tuple[Path, dict]:
    """One 4-validator + 1 full node testnet written through the CLI, shared (read only)."""
    out = tmp_path_factory.mktemp("tn") / "net"
    result = run("testnet", "--validators", "4", "--full-nodes", "1", "--chain-id", "shop-tn",
                 "--out", str(out), "--base-port", "31000", "--json")
    assert result.exit_code == 0, result.output
    return out, json.loads(result.output)


def _configs(out: Path, count: int) -> list[dict]:
    return [tomllib.loads((out / f"node{i}" / "config" / "config.toml").read_text())
            for i in range(count)]


def test_layout_homes_manifest_and_valid_configs(net) -> None:
    out, info = net
    assert sorted(p.name for p in out.iterdir()) == [f"node{i}" for i in range(5)] + [MANIFEST]
    assert info["chain_id"] == "shop-tn" and len(info["nodes"]) == 5
    assert [n["role"] for n in info["nodes"]] == ["validator"] * 4 + ["full"]
    for i in range(5):
        home = Home(out / f"node{i}")
        assert home.is_initialized()
        config = load_config(home.config_file)  # every key valid
        assert config.get("node", "moniker") == f"node{i}"
        for key, value in LOCALNET_CONSENSUS.items():
            assert config.get("consensus", key) == value
        # node ids in the manifest are the node keys' addresses
        node_key = read_key_file(home.node_key_file)
        assert info["nodes"][i]["node_id"] == address_from_pubkey(node_key.public_key).hex()
    manifest = load_manifest(out)
    assert manifest.to_dict() == {k: v for k, v in info.items() if k != "out"}
    # local timeouts stay consistent with the documented rule
    assert LOCALNET_CONSENSUS["empty_block_interval_ms"] < LOCALNET_CONSENSUS["timeout_propose_ms"]


def test_one_genesis_with_exactly_the_validators(net) -> None:
    out, info = net
    raw = {(out / f"node{i}" / "config" / "genesis.json").read_bytes() for i in range(5)}
    assert len(raw) == 1, "every home must hold the same genesis bytes"
    genesis = load_genesis(out / "node0" / "config" / "genesis.json")
    assert genesis.chain_id == "shop-tn"
    validator_keys = [read_key_file(Home(out / f"node{i}").validator_key_file).public_key
                      for i in range(5)]
    assert sorted(genesis.params.validators) == sorted((k, 10) for k in validator_keys[:4])
    assert validator_keys[4] not in {pk for pk, _ in genesis.params.validators}
    assert len(set(validator_keys)) == 5 and len({n["node_id"] for n in info["nodes"]}) == 5


def test_dev_keys_are_funded_and_the_same_in_every_home(net) -> None:
    out, info = net
    genesis = load_genesis(out / "node0" / "config" / "genesis.json")
    balances = dict(genesis.params.initial_balances)
    first = {name: (out / "node0" / "keyring" / f"{name}.json").read_bytes()
             for name in DEV_ACCOUNTS}
    for i in range(5):
        for name in DEV_ACCOUNTS:
            path = out / f"node{i}" / "keyring" / f"{name}.json"
            assert path.read_bytes() == first[name]
            assert oct(os.stat(path).st_mode & 0o777) == oct(0o600)
    for name in DEV_ACCOUNTS:
        pub = bytes.fromhex(json.loads(first[name])["public_key"])
        address = address_from_pubkey(pub)
        assert balances[address] > 0
        assert info["dev_accounts"][name] == address_to_text(address)
    assert genesis.params.arbiters == (address_from_text_of(info, "arbiter"),)
    # the CLI resolves key names against any home
    listed = run("keys", "list", "--home", str(out / "node3"), "--json")
    assert sorted(k["name"] for k in json.loads(listed.output)) == sorted(DEV_ACCOUNTS)


def address_from_text_of(info: dict, name: str) -> bytes:
    from core.address import address_from_text

    return address_from_text(info["dev_accounts"][name])


def test_ports_are_distinct_loopback_and_follow_the_base(net) -> None:
    out, info = net
    configs = _configs(out, 5)
    seen = []
    for i, config in enumerate(configs):
        rpc, p2p = config["rpc"]["listen"], config["p2p"]["listen"]
        assert rpc == f"127.0.0.1:{31000 + 2 * i}" and p2p == f"127.0.0.1:{31001 + 2 * i}"
        assert info["nodes"][i]["rpc_port"] == 31000 + 2 * i
        seen += [rpc, p2p]
    assert len(set(seen)) == len(seen)


def test_persistent_peers_list_every_other_node(net) -> None:
    out, info = net
    configs = _configs(out, 5)
    expected = {n["name"]: f"{n['node_id']}@127.0.0.1:{n['p2p_port']}" for n in info["nodes"]}
    for i, config in enumerate(configs):
        peers = config["p2p"]["persistent_peers"]
        assert sorted(peers) == sorted(v for k, v in expected.items() if k != f"node{i}")
        for peer in peers:
            node_id, _, hostport = peer.partition("@")
            assert len(bytes.fromhex(node_id)) == 20 and hostport.startswith("127.0.0.1:")


def test_peers_parse_with_the_p2p_contract_when_p2p_exists(net) -> None:
    p2p = pytest.importorskip("p2p")
    if not hasattr(p2p, "parse_peer_address"):
        pytest.skip("p2p.parse_peer_address not written yet")
    out, info = net
    for config in _configs(out, 5):
        for peer in config["p2p"]["persistent_peers"]:
            node_id, host, port = p2p.parse_peer_address(peer)
            assert host == "127.0.0.1" and len(node_id) == 20 and port > 0


def test_refuses_to_overwrite_an_existing_dir(tmp_path: Path) -> None:
    out = tmp_path / "net"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    line = one_line_error(run("testnet", "-v", "2", "--out", str(out)), "already exists")
    assert str(out) in line
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert run("testnet", "-v", "2", "--out", str(a_file)).exit_code == 2  # click: a file
    with pytest.raises(TestnetError, match="already exists"):
        generate_testnet(a_file, 2)
    assert a_file.read_text() == "x"
    # an existing EMPTY directory is fine (nothing to overwrite)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run("testnet", "-v", "1", "--out", str(empty)).exit_code == 0
    assert (empty / MANIFEST).exists()
    # and a second run over a testnet refuses, leaving it intact
    before = (empty / "node0" / "config" / "genesis.json").read_bytes()
    one_line_error(run("testnet", "-v", "1", "--out", str(empty)), "already exists")
    assert (empty / "node0" / "config" / "genesis.json").read_bytes() == before


@pytest.mark.parametrize("args, needle", [
    (["-v", "0"], "--validators"),
    (["-v", "-3"], "--validators"),
    (["-v", "2", "--full-nodes", "-1"], "--full-nodes"),
    (["-v", "2", "--chain-id", "Bad Chain"], "--chain-id"),
    (["-v", "2", "--base-port", "65534"], "--base-port"),
    (["-v", "2", "--base-port", "80"], "--base-port"),
    (["-v", "60", "--full-nodes", "10"], "at most"),
])
def test_bad_args_are_one_line_and_leave_nothing(tmp_path: Path, args, needle) -> None:
    out = tmp_path / "net"
    one_line_error(run("testnet", *args, "--out", str(out)), needle)
    assert list(tmp_path.iterdir()) == []


def test_missing_required_options_are_usage_errors(tmp_path: Path) -> None:
    assert run("testnet", "--out", str(tmp_path / "x")).exit_code == 2
    assert run("testnet", "-v", "2").exit_code == 2
    assert run("testnet", "-v", "two", "--out", str(tmp_path / "x")).exit_code == 2


def test_explicit_ports_must_be_distinct(tmp_path: Path) -> None:
    with pytest.raises(TestnetError, match="own two ports"):
        generate_testnet(tmp_path / "n", 2, ports=[(40000, 40001), (40001, 40002)])
    with pytest.raises(TestnetError, match="one .* port pair per node"):
        generate_testnet(tmp_path / "n", 2, ports=[(40000, 40001)])
    assert not (tmp_path / "n").exists()


def test_a_failure_midway_leaves_no_partial_testnet(tmp_path: Path, monkeypatch) -> None:
    real = testnet_mod.init_home
    calls = []

    def failing_init_home(root, *args, **kwargs):
        calls.append(root)
        if len(calls) == 3:
            raise OSError("disk full (simulated)")
        return real(root, *args, **kwargs)

    monkeypatch.setattr(testnet_mod, "init_home", failing_init_home)
    with pytest.raises(OSError, match="simulated"):
        generate_testnet(tmp_path / "n", 4)
    assert list(tmp_path.iterdir()) == [], "the staging directory must be removed"


def test_custom_consensus_overrides_and_explicit_ports(tmp_path: Path) -> None:
    manifest = generate_testnet(tmp_path / "n", 2, 1, ports=[(41000, 41001), (41010, 41011),
                                                             (41020, 41021)],
                                consensus={"timeout_commit_ms": 15})
    assert [n.rpc_port for n in manifest.nodes] == [41000, 41010, 41020]
    config = load_config(tmp_path / "n" / "node2" / "config" / "config.toml")
    assert config.get("consensus", "timeout_commit_ms") == 15
    assert config.get("consensus", "timeout_propose_ms") == LOCALNET_CONSENSUS["timeout_propose_ms"]
    assert config.get("p2p", "listen") == "127.0.0.1:41021"


# --- localnet without processes ---------------------------------------------------------------


def test_localnet_refuses_a_dir_that_is_not_a_testnet(tmp_path: Path) -> None:
    for sub in ("up", "down", "status"):
        one_line_error(run("localnet", sub, "--dir", str(tmp_path)), "not a testnet directory")
    (tmp_path / MANIFEST).write_text("{not json")
    one_line_error(run("localnet", "status", "--dir", str(tmp_path)), "not a valid testnet")


def test_localnet_unknown_node_name(tmp_path: Path) -> None:
    generate_testnet(tmp_path / "n", 1, base_port=42000)
    one_line_error(run("localnet", "up", "--dir", str(tmp_path / "n"), "--node", "node7"),
                   "no node 'node7'")


def test_localnet_status_and_down_on_a_stopped_net(tmp_path: Path) -> None:
    out = tmp_path / "n"
    generate_testnet(out, 2, 1, base_port=42100)
    rows = status(out)
    assert [(r["node"], r["role"], r["alive"], r["height"]) for r in rows] == [
        ("node0", "validator", False, None), ("node1", "validator", False, None),
        ("node2", "full", False, None)]
    table = status_table(rows)
    assert table.splitlines()[0].split() == ["node", "role", "pid", "alive", "height", "peers",
                                             "rpc"]
    assert len(table.splitlines()) == 4
    result = run("localnet", "down", "--dir", str(out), "--json")
    assert result.exit_code == 0
    assert [r["state"] for r in json.loads(result.output)] == ["not running"] * 3


def test_stale_pid_files_are_detected_and_removed(tmp_path: Path) -> None:
    out = tmp_path / "n"
    generate_testnet(out, 3, base_port=42200)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / "node0" / PID_FILE).write_text(f"{dead.pid}\n")  # a process that is gone
    (out / "node1" / PID_FILE).write_text(f"{os.getpid()}\n")  # alive, but not a node
    (out / "node2" / PID_FILE).write_text("garbage\n")
    rows = status(out)
    assert [(r["alive"], r["stale_pid_file"]) for r in rows] == [(False, True)] * 3
    assert "stale" in status_table(rows)
    results = down(out)
    assert [r["state"] for r in results] == ["stale pid file removed"] * 3
    assert not any((out / f"node{i}" / PID_FILE).exists() for i in range(3))
