"""End to end: a real node process stopped, crashed and fed bad input.

- SIGTERM and start again: every block and the state are still there, unchanged.
- kill -9 twenty times at random moments while txs flow: the node reopens every time, the
  chain links up from height 1, blocks seen before a crash are unchanged after it, every tx
  acknowledged as committed is still in the chain, and heights keep growing.
- Bad RPC input, bad txs, a wrong keystore passphrase, corrupt configs: the right error code
  or one clear line, and no state change.
"""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import commerce_vm as vm
from commerce_vm import sign_tx
from commerce_vm import txtypes as T
from core.address import address_from_text
from core.hashing import sha256
from core.keys import PrivateKey
from node.client import Client, ClientError
from node.rpc.errors import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    NODE_NOT_READY,
    PARSE_ERROR,
    TX_ALREADY_KNOWN,
)
from tests.e2e_helpers import (  # noqa: F401 (fixtures)
    NodeHome,
    all_headers,
    assert_one_line_error,
    check_chain_links,
    init_home,
    node_homes_fixture,
    post_raw,
    rpc_error,
    run_cli,
    running_node_fixture,
    set_config,
    total_supply,
)

TRANSFER = T.TYPE_CODES["transfer"]
DEV_NAMES = ("merchant", "buyer", "arbiter")


def _sign_transfer(home: NodeHome, sender: str, nonce: int, to: str, amount: int,
                   fee: int = 10, chain_id: str | None = None) -> bytes:
    key = PrivateKey(home.seed(sender))
    return sign_tx(key, chain_id or home.chain_id, TRANSFER, nonce, fee,
                   [address_from_text(home.accounts[to]), amount])


def _accounts(client: Client, home: NodeHome) -> dict[str, dict[str, Any]]:
    return {n: client.call("account", address=a) for n, a in home.accounts.items()}


def _comparable(header: dict[str, Any]) -> tuple[str, str, str]:
    return header["hash"], header["app_hash"], header["prev_hash"]


# --- SIGTERM restart --------------------------------------------------------------------------


def test_sigterm_restart_keeps_every_block_and_goes_on(running_node: NodeHome) -> None:
    home = running_node
    rpc = home.client()
    sent = home.cli("tx", "transfer", "--from", "merchant", "--to", "buyer", "--amount", "77")
    assert sent["code"] == 0
    listing = home.cli("tx", "list", "--from", "merchant", "--title", "Kettle", "--price", "90",
                       "--quantity", "3")
    assert listing["code"] == 0
    top = home.wait_height(sent["height"] + 5)
    before = all_headers(rpc, top)
    check_chain_links(before)
    accounts = _accounts(rpc, home)
    status = rpc.call("status")

    assert home.stop() == 0
    assert "shutting down" in home.log_tail()
    with pytest.raises(ClientError, match="cannot reach node"):
        Client(home.url, timeout=2).call("status")

    home.start()
    after = all_headers(rpc, top)
    assert after == before  # same block hashes, app hashes, links, times, proposers
    new_status = rpc.call("status")
    assert new_status["sync_info"]["latest_block_height"] >= status["sync_info"][
        "latest_block_height"]
    assert new_status["node_info"] == status["node_info"]
    found = rpc.call("tx", hash=sent["hash"])
    assert (found["height"], found["result"]["code"]) == (sent["height"], 0)
    assert rpc.call("listing", id=1)["title"] == "Kettle"

    # It keeps producing blocks and accepts txs; the state went on from where it was.
    top_after = home.wait_height(top + 5)
    check_chain_links(all_headers(rpc, top_after))
    again = home.cli("tx", "transfer", "--from", "buyer", "--to", "merchant", "--amount", "5")
    assert again["code"] == 0 and again["height"] > top
    now = _accounts(rpc, home)
    assert now["buyer"]["balance"] == accounts["buyer"]["balance"] - 5 - 10
    assert now["buyer"]["nonce"] == accounts["buyer"]["nonce"] + 1
    assert now["merchant"]["balance"] == accounts["merchant"]["balance"] + 5


def test_sigterm_answers_waiting_commit_calls(running_node: NodeHome) -> None:
    """A broadcast_tx_commit whose tx cannot commit yet (a nonce gap parks it) is answered
    with NODE_NOT_READY when the node stops, instead of holding SIGTERM until it times out
    (commit_timeout_ms is 30 s, twice what `stop` waits here)."""
    home = running_node
    parked = _sign_transfer(home, "merchant", 5, "buyer", 1)
    answers: list[Any] = []

    def wait_for_commit() -> None:
        try:
            answers.append(Client(home.url, timeout=60).call("broadcast_tx_commit",
                                                             tx=parked.hex()))
        except ClientError as exc:
            answers.append(exc)

    waiter = threading.Thread(target=wait_for_commit, daemon=True)
    waiter.start()
    deadline = time.monotonic() + 10
    while home.client().call("num_unconfirmed_txs")["n_txs"] == 0 and \
            time.monotonic() < deadline:
        time.sleep(0.05)  # until the node holds the parked tx (and so the waiter)
    assert home.client().call("account", address=home.accounts["merchant"])["nonce"] == 0
    assert home.stop(timeout=15) == 0
    waiter.join(20)
    assert len(answers) == 1 and isinstance(answers[0], ClientError), answers
    assert answers[0].code == NODE_NOT_READY
    assert answers[0].data == {"hash": sha256(parked).hex()}


# --- kill -9 under load -----------------------------------------------------------------------


class TransferLoad:
    """Background senders: each dev key sends transfers, some waiting for the commit
    (broadcast_tx_commit: those answered are 'acknowledged as committed') and some not
    (broadcast_tx_sync). Errors while the node is down are expected and just retried."""

    def __init__(self, home: NodeHome):
        self.home = home
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.committed: dict[str, int] = {}  # tx hash -> height the node acknowledged
        self.sync_accepted = 0
        self.errors = 0
        self.unexpected: list[str] = []
        self.threads = [
            threading.Thread(target=self._commit_loop, args=("merchant", "buyer"), daemon=True),
            threading.Thread(target=self._commit_loop, args=("buyer", "arbiter"), daemon=True),
            threading.Thread(target=self._sync_loop, args=("arbiter", "merchant"), daemon=True),
        ]

    def __enter__(self) -> TransferLoad:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(15)

    def _next_nonce(self, client: Client, sender: str) -> int:
        return client.call("account", address=self.home.accounts[sender])["next_nonce"]

    def _commit_loop(self, sender: str, to: str) -> None:
        client = Client(self.home.url, timeout=10)
        while not self.stop.is_set():
            try:
                nonce = self._next_nonce(client, sender)
                raw = _sign_transfer(self.home, sender, nonce, to, 1 + nonce % 7)
                answer = client.call("broadcast_tx_commit", tx=raw.hex())
                if answer["code"] != 0:
                    self.unexpected.append(f"committed with code {answer}")
                with self.lock:
                    self.committed[answer["hash"]] = answer["height"]
            except ClientError:
                self.errors += 1
                time.sleep(0.05)
            except Exception as exc:  # noqa: BLE001 (a connection dropped mid-answer)
                self.errors += 1
                if not isinstance(exc, OSError):
                    self.unexpected.append(repr(exc))
                time.sleep(0.05)

    def _sync_loop(self, sender: str, to: str) -> None:
        client = Client(self.home.url, timeout=10)
        while not self.stop.is_set():
            try:
                nonce = self._next_nonce(client, sender)
                for offset in range(5):
                    raw = _sign_transfer(self.home, sender, nonce + offset, to, 3)
                    client.call("broadcast_tx_sync", tx=raw.hex())
                    self.sync_accepted += 1
                time.sleep(0.02)
            except Exception:  # noqa: BLE001 (node down, or a nonce already taken)
                self.errors += 1
                time.sleep(0.05)

    def acknowledged(self) -> dict[str, int]:
        with self.lock:
            return dict(self.committed)


def test_kill9_while_txs_flow(tmp_path: Path, node_homes: list[NodeHome]) -> None:
    home = init_home(tmp_path / "home", consensus={
        "timeout_commit_ms": 50, "empty_block_interval_ms": 200, "timeout_propose_ms": 600,
        "timeout_propose_delta_ms": 100, "timeout_prevote_ms": 200,
        "timeout_prevote_delta_ms": 100, "timeout_precommit_ms": 200,
        "timeout_precommit_delta_ms": 100})
    node_homes.append(home)
    home.start()
    rpc = home.client(timeout=10)
    addresses = list(home.accounts.values())
    supply = total_supply(home.url, addresses)
    rng = random.Random(20240611)
    seen: dict[int, tuple[str, str, str]] = {}  # height -> header fields seen over RPC
    checked_txs: set[str] = set()
    top = 0

    def observe() -> int:
        """Record the latest headers the node has served (they are committed)."""
        try:
            page = rpc.call("blockchain")
        except ClientError:
            return top
        for header in page["headers"]:
            seen[header["height"]] = _comparable(header)
        return page["last_height"]

    with TransferLoad(home) as load:
        for crash in range(20):
            deadline = time.monotonic() + rng.uniform(0.2, 1.5)
            while time.monotonic() < deadline:
                top = max(top, observe())
                time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
            home.kill()
            acknowledged = load.acknowledged()  # the process is dead: no more acks
            home.start()

            # The chain is intact and agrees with everything served before the crash.
            now = rpc.call("status")["sync_info"]["latest_block_height"]
            assert now >= top, f"crash {crash}: height went back from {top} to {now}"
            headers = all_headers(rpc, now)
            check_chain_links(headers)
            for height, fields in seen.items():
                assert _comparable(headers[height]) == fields, \
                    f"crash {crash}: block {height} changed"
            seen.update((h, _comparable(v)) for h, v in headers.items())
            for tx_hash, height in acknowledged.items():
                if tx_hash in checked_txs:
                    continue
                found = rpc.call("tx", hash=tx_hash)
                assert (found["height"], found["result"]["code"]) == (height, 0), \
                    f"crash {crash}: acknowledged tx {tx_hash} lost"
                checked_txs.add(tx_hash)
            assert total_supply(home.url, addresses) == supply
            top = home.wait_height(now + 1)  # it goes on

    assert not load.unexpected, load.unexpected[:5]
    assert len(checked_txs) >= 20, f"too few txs committed under load: {len(checked_txs)}"
    assert load.sync_accepted > 0
    # A last full pass: every acknowledged tx, every link, supply.
    final = all_headers(rpc, home.wait_height(top + 1))
    check_chain_links(final)
    for tx_hash, height in load.acknowledged().items():
        assert rpc.call("tx", hash=tx_hash)["height"] == height
    assert total_supply(home.url, addresses) == supply
    assert home.stop() == 0


# --- bad input against a running node ---------------------------------------------------------


def _rpc_raw(home: NodeHome, body: bytes) -> dict[str, Any]:
    status, reply = post_raw(home.url, body)
    assert reply is not None, f"HTTP {status} without a body"
    return reply


def test_bad_rpc_input_is_refused_without_state_change(running_node: NodeHome) -> None:
    home = running_node
    rpc = home.client()
    # One committed tx, so the state and the merchant's nonce are not the genesis ones.
    first = rpc.call("broadcast_tx_commit",
                     tx=_sign_transfer(home, "merchant", 0, "buyer", 1).hex())
    assert first["code"] == 0
    height = home.wait_height(first["height"] + 1)
    app_hash = rpc.call("status")["sync_info"]["latest_app_hash"]
    header_app_hash = rpc.call("block", height=height)["header"]["app_hash"]
    assert header_app_hash != rpc.call("block", height=1)["header"]["app_hash"]
    accounts = _accounts(rpc, home)

    # Transport and envelope errors.
    assert _rpc_raw(home, b"{not json")["error"]["code"] == PARSE_ERROR
    assert _rpc_raw(home, b"\xff\xfe\x00")["error"]["code"] == PARSE_ERROR
    assert _rpc_raw(home, b'{"jsonrpc": "1.0", "id": 1, "method": "status"}')["error"][
        "code"] == INVALID_REQUEST
    assert _rpc_raw(home, b"[]")["error"]["code"] == INVALID_REQUEST
    assert _rpc_raw(home, b"42")["error"]["code"] == INVALID_REQUEST
    batch = [{"jsonrpc": "2.0", "id": i, "method": "health"} for i in range(1000)]
    assert _rpc_raw(home, json.dumps(batch).encode())["error"]["code"] == INVALID_REQUEST
    good_batch = [{"jsonrpc": "2.0", "id": i, "method": "health"} for i in range(3)]
    assert [r["id"] for r in _rpc_raw(home, json.dumps(good_batch).encode())] == [0, 1, 2]

    status, reply = post_raw(home.url, b'{"jsonrpc": "2.0", "id": 1, "method": "status", '
                                       b'"params": {"pad": "' + b"x" * (1 << 20) + b'"}}')
    assert status == 413 and reply["error"]["code"] == INVALID_REQUEST

    # Method and params errors.
    assert rpc_error(rpc, "no_such_method").code == METHOD_NOT_FOUND
    assert rpc_error(rpc, "block", height="ten").code == INVALID_PARAMS
    assert rpc_error(rpc, "block", height=-1).code == INVALID_PARAMS
    assert rpc_error(rpc, "block", colour="blue").code == INVALID_PARAMS
    assert rpc_error(rpc, "account").code == INVALID_PARAMS
    assert rpc_error(rpc, "account", address="cm1typo").code == INVALID_PARAMS
    assert rpc_error(rpc, "tx", hash="abcd").code == INVALID_PARAMS
    assert rpc_error(rpc, "listings", limit=10**6).code == INVALID_PARAMS
    assert rpc_error(rpc, "broadcast_tx_sync", tx="not hex").code == INVALID_PARAMS
    positional = _rpc_raw(home, b'{"jsonrpc":"2.0","id":7,"method":"block","params":[1,2,3]}')
    assert positional["error"]["code"] == INVALID_PARAMS and positional["id"] == 7

    # Bad txs: each refused with the VM's stable code and its name in data.
    nonce = accounts["merchant"]["nonce"]
    good = _sign_transfer(home, "merchant", nonce, "buyer", 1)
    bad_signature = good[:-1] + bytes([good[-1] ^ 1])
    cases = {
        "malformed": (b"\x93\x01\x02", 100),
        "truncated": (good[:-5], 100),
        "trailing bytes": (good + b"\x00", 100),
        "tx_too_large": (b"\x00" * 70_000, 101),
        "wrong_chain": (_sign_transfer(home, "merchant", nonce, "buyer", 1,
                                       chain_id="another-chain"), 102),
        "bad_signature": (bad_signature, 108),
        "fee_too_low": (_sign_transfer(home, "merchant", nonce, "buyer", 1, fee=1), 109),
        "bad_nonce": (_sign_transfer(home, "merchant", nonce - 1, "buyer", 2), 200),
        "replay of the committed tx": (_sign_transfer(home, "merchant", 0, "buyer", 1),
                                       TX_ALREADY_KNOWN),
        "insufficient_funds": (_sign_transfer(home, "merchant", nonce, "buyer", 10**15), 300),
    }
    for label, (raw, code) in cases.items():
        for method in ("broadcast_tx_sync", "broadcast_tx_commit"):
            err = rpc_error(rpc, method, tx=raw.hex())
            assert err.code == code, f"{label} via {method}: {err.code} {err}"
            assert isinstance(err.data, dict) and err.data.get("name"), (label, err.data)
            if code in vm.BY_CODE:
                assert err.data["name"] == vm.BY_CODE[code].name
    assert rpc.call("num_unconfirmed_txs")["n_txs"] == 0

    # Still healthy, still producing blocks, and nothing changed.
    assert rpc.call("health")["healthy"] is True
    home.wait_height(height + 3)
    assert rpc.call("block", height=height)["header"]["app_hash"] == app_hash
    assert _accounts(rpc, home) == accounts
    latest = rpc.call("status")["sync_info"]
    assert rpc.call("block", height=latest["latest_block_height"])["header"]["app_hash"] in (
        app_hash, latest["latest_app_hash"])

    # And the good tx still goes through afterwards.
    answer = rpc.call("broadcast_tx_commit", tx=good.hex())
    assert answer["code"] == 0


def test_wrong_passphrase_is_one_line(running_node: NodeHome, tmp_path: Path) -> None:
    home = running_node
    right, wrong = tmp_path / "right.txt", tmp_path / "wrong.txt"
    right.write_text("correct horse battery staple\n")
    wrong.write_text("incorrect horse\n")
    created = home.cli("keys", "new", "vault", "--passphrase-file", str(right))
    assert created["encrypted"] is True
    assert home.cli("tx", "transfer", "--from", "merchant", "--to", "vault",
                    "--amount", "500")["code"] == 0

    rpc = home.client()
    before = rpc.call("account", address=created["address"])
    bad = home.cli_raw("tx", "transfer", "--from", "vault", "--to", "buyer", "--amount", "1",
                       "--passphrase-file", str(wrong))
    assert bad.returncode == 1
    assert_one_line_error(bad, "passphrase")
    missing = home.cli_raw("tx", "transfer", "--from", "vault", "--to", "buyer", "--amount", "1")
    assert_one_line_error(missing, "passphrase")
    assert rpc.call("account", address=created["address"]) == before

    ok = home.cli("tx", "transfer", "--from", "vault", "--to", "buyer", "--amount", "1",
                  "--passphrase-file", str(right))
    assert ok["code"] == 0
    after = rpc.call("account", address=created["address"])
    assert (after["balance"], after["nonce"]) == (before["balance"] - 11, before["nonce"] + 1)


@pytest.mark.parametrize(("config_text", "needle"), [
    ("this is [not toml", "not valid TOML"),
    ("[rpc]\nlisten = \"127.0.0.1:1\"\nbogus_key = 1\n", "bogus_key"),
    ("[nonsense]\nx = 1\n", "nonsense"),
    ("[consensus]\ntimeout_commit_ms = \"fast\"\n", "timeout_commit_ms"),
    ("[rpc]\nlisten = \"nowhere\"\n", "listen"),
    ("[storage]\nbackend = \"floppy\"\n", "backend"),
])
def test_corrupt_config_refuses_to_start(tmp_path: Path, node_homes: list[NodeHome],
                                         config_text: str, needle: str) -> None:
    home = init_home(tmp_path / "home")
    node_homes.append(home)
    home.config_file.write_text(config_text)
    proc = run_cli("start", "--home", str(home.path), check=False, timeout=30)
    line = assert_one_line_error(proc, needle)
    assert "config.toml" in line
    assert not (home.path / "data" / "chain.db").exists()  # refused before touching data


def test_edited_config_is_used(tmp_path: Path, node_homes: list[NodeHome]) -> None:
    """The positive control of the test above: a valid edit is accepted and applied."""
    home = init_home(tmp_path / "home")
    node_homes.append(home)
    set_config(home.config_file, "node", {"moniker": "edited-moniker"})
    home.start()
    assert home.client().call("status")["node_info"]["moniker"] == "edited-moniker"
    assert home.stop() == 0


def test_second_node_on_same_home_or_port_is_refused(running_node: NodeHome, tmp_path: Path,
                                                     node_homes: list[NodeHome]) -> None:
    home = running_node
    same_home = run_cli("start", "--home", str(home.path), check=False, timeout=30)
    assert_one_line_error(same_home, "locked")

    other = init_home(tmp_path / "other")
    node_homes.append(other)
    set_config(other.config_file, "rpc", {"listen": f"127.0.0.1:{home.port}"})
    same_port = run_cli("start", "--home", str(other.path), check=False, timeout=30)
    assert_one_line_error(same_port, "address already in use")

    # The running node did not notice; the refused one starts fine on its own port.
    assert home.client().call("health")["healthy"] is True
    set_config(other.config_file, "rpc", {"listen": f"127.0.0.1:{other.port}"})
    other.start()
    assert other.client().call("status")["node_info"]["chain_id"] == other.chain_id
    assert other.stop() == 0
