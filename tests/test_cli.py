"""The CLI without a node: init, keys, version, and one-line errors with a non-zero exit."""

import json
import os
import stat

from click.testing import CliRunner

from cli import main


def run(*args, env=None):
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_init_dev_writes_a_home_with_dev_keys(tmp_path):
    home = tmp_path / "h"
    result = run("init", "--home", str(home), "--dev", "--chain-id", "shop-1", "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["chain_id"] == "shop-1"
    assert set(info["dev_accounts"]) == {"merchant", "buyer", "arbiter"}
    genesis = json.loads((home / "config" / "genesis.json").read_text())
    assert genesis["params"]["chain_id"] == "shop-1"
    assert info["dev_accounts"]["arbiter"] in genesis["params"]["arbiters"]
    key_mode = stat.S_IMODE(os.stat(home / "config" / "validator_key.json").st_mode)
    assert key_mode == 0o600
    # a second init never overwrites a validator key (that could make it double-sign)
    again = run("init", "--home", str(home))
    assert again.exit_code == 1
    assert again.output.strip().startswith("error:") and "already initialized" in again.output


def test_init_refuses_a_bad_chain_id(tmp_path):
    result = run("init", "--home", str(tmp_path / "h"), "--chain-id", "Bad Chain")
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1


def test_keys_round_trip_and_errors(tmp_path):
    home = str(tmp_path)
    pw = tmp_path / "pw"
    pw.write_text("correct horse\n")
    created = json.loads(run("keys", "new", "alice", "--home", home, "--passphrase-file",
                             str(pw), "--json").output)
    shown = json.loads(run("keys", "show", "alice", "--home", home, "--json").output)
    assert shown["address"] == created["address"] and shown["encrypted"] is True
    listed = json.loads(run("keys", "list", "--home", home, "--json").output)
    assert [k["name"] for k in listed] == ["alice"]
    seed = run("keys", "export", "alice", "--home", home, "--passphrase-file", str(pw)).output
    seed_file = tmp_path / "seed"
    seed_file.write_text(seed)
    imported = json.loads(run("keys", "import", "alice2", "--home", home, "--seed-file",
                              str(seed_file), "--passphrase-file", str(pw), "--json").output)
    assert imported["address"] == created["address"]
    wrong = tmp_path / "wrong"
    wrong.write_text("nope")
    result = run("keys", "export", "alice", "--home", home, "--passphrase-file", str(wrong))
    assert result.exit_code == 1
    assert result.output.strip() == "error: wrong passphrase for key 'alice'"
    assert "correct horse" not in result.output


def test_missing_passphrase_without_a_terminal_is_an_error_not_a_hang(tmp_path):
    result = run("keys", "new", "bob", "--home", str(tmp_path),
                 env={"CHAINMERCE_PASSPHRASE": ""})
    assert result.exit_code == 1
    assert "no passphrase" in result.output


def test_start_on_an_uninitialized_home_is_one_line(tmp_path):
    result = run("start", "--home", str(tmp_path / "nothing"))
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1
    assert "chainmerce init" in result.output


def test_query_with_node_down_is_one_line(tmp_path):
    result = run("query", "status", "--node", "http://127.0.0.1:9")
    assert result.exit_code == 1
    assert result.output.startswith("error: cannot reach node")


def test_tx_with_unknown_key_is_one_line(tmp_path):
    result = run("tx", "transfer", "--home", str(tmp_path), "--from", "ghost", "--to",
                 "ghost", "--amount", "1", "--node", "http://127.0.0.1:9")
    assert result.exit_code == 1
    assert "ghost" in result.output and len(result.output.strip().splitlines()) == 1


def test_version():
    result = run("version", "--json")
    assert json.loads(result.output)["version"]
