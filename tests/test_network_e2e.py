"""Multi-process network tests (issue 5): real `chainmerce start` processes on loopback.

Each test builds its own testnet in tmp_path on free ports (tests/network_helpers.py) and
kills every process it started at teardown. Deadlines are generous liveness bounds, never
performance assertions.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest

from consensus.messages import Vote, VoteType, encode_message
from node import localnet
from node.home import DEV_BALANCE
from tests.e2e_helpers import assert_one_line_error, free_port, run_cli
from tests.network_helpers import (
    DEV_NAMES,
    FAST_NETWORK,
    FakePeer,
    LocalTestnet,
    network_available,
    testnets_fixture,
    wait_until,
)

_AVAILABLE, _WHY = network_available()
pytestmark = pytest.mark.skipif(not _AVAILABLE, reason=f"no p2p network yet: {_WHY}")

__all__ = ["testnets_fixture"]  # the fixture is used by name

CONSENSUS_CHANNEL = 1


def _four(tmp_path: Path, testnets: list[LocalTestnet], **kwargs) -> LocalTestnet:
    net = LocalTestnet.build(tmp_path / "net", 4, **kwargs)
    testnets.append(net)
    return net


def _signers_of(net: LocalTestnet, height: int) -> set[str]:
    """Addresses of the validators whose precommits are in the commit of `height`."""
    validators = net.call(0, "validators", height=height)["validators"]
    commit = net.call(0, "commit", height=height)["commit"]
    return {validators[s["validator_index"]]["address"] for s in commit["signatures"]}


# --- the network commits, and every node holds the same chain ---------------------------------


def test_four_validators_commit_txs_sent_to_any_node_and_agree(
        tmp_path: Path, testnets: list[LocalTestnet]) -> None:
    net = _four(tmp_path, testnets)
    net.start()
    net.wait_connected()
    net.wait_height(3)
    # Nonces of one sender are spread over different nodes, so a node sees nonce n+1
    # before gossip brings it nonce n: tx gossip and parking must both work.
    hashes = []
    for k in range(12):
        sender, to = DEV_NAMES[k % 3], DEV_NAMES[(k + 1) % 3]
        hashes.append(net.submit(k % 4, net.transfer(sender, to, 1_000 + k)))
    answer = net.submit_commit(3, net.transfer("buyer", "merchant", 7))
    assert answer["code"] == 0, answer
    hashes.append(answer["hash"])
    net.wait_txs_committed(hashes)
    # every committed tx sits at the same height on every node
    for tx_hash in hashes:
        assert len({net.tx_height(i, tx_hash) for i in range(4)}) == 1
    top = max(net.heights().values())
    net.wait_height(top + 2)
    compared = net.assert_same_chain()
    assert compared >= top
    # the proposer rotates: several validators proposed blocks
    headers = net.headers(0, 1, compared)
    assert len({h["proposer"] for h in headers.values()}) >= 2
    # all txs are committed everywhere and no more come: every node has the same balances,
    # and the dev accounts together lost exactly the fees
    balances = [{n: net.call(i, "account", address=a)["balance"]
                 for n, a in net.manifest.dev_accounts.items()} for i in range(4)]
    assert all(b == balances[0] for b in balances), balances
    assert sum(balances[0].values()) == 3 * DEV_BALANCE - 10 * len(hashes)


def test_one_validator_down_the_rest_go_on_and_it_rejoins(
        tmp_path: Path, testnets: list[LocalTestnet]) -> None:
    net = _four(tmp_path, testnets)
    net.start()
    net.wait_connected()
    net.wait_height(2)
    assert net.stop(3) == 0
    live = [0, 1, 2]
    base = max(net.heights(live).values())
    net.wait_height(base + 5, live)  # 30 of 40 power is more than 2/3
    answer = net.submit_commit(1, net.transfer("merchant", "buyer", 55))
    assert answer["code"] == 0
    net.nodes[3].start(wait=False)
    net.nodes[3].wait_ready(min_height=0)
    target = max(net.heights(live).values())
    net.wait_height(target + 3, timeout=60)  # node3 synced the blocks it missed
    net.wait_txs_committed([answer["hash"]], [3])
    # it rejoined consensus: its precommit shows up in later commit certificates
    node3 = net.manifest.nodes[3].validator_address
    start = net.height(3)
    net.wait_height(start + 12)
    assert any(node3 in _signers_of(net, h) for h in range(start + 1, start + 12)), \
        "node3 never signed a commit after rejoining"
    net.assert_same_chain()


def test_a_full_node_started_late_syncs_200_blocks_and_follows(
        tmp_path: Path, testnets: list[LocalTestnet]) -> None:
    net = LocalTestnet.build(tmp_path / "net", 4, 1, consensus=FAST_NETWORK)
    testnets.append(net)
    validators = [0, 1, 2, 3]
    net.start(validators)
    net.wait_connected(validators)
    net.wait_height(5, validators)
    hashes = [net.submit(k % 4, net.transfer(DEV_NAMES[k % 3], DEV_NAMES[(k + 2) % 3], 10 + k))
              for k in range(30)]  # blocks with txs among the empty ones
    net.wait_txs_committed(hashes, [0])
    net.wait_height(200, validators, timeout=150)
    net.nodes[4].start(wait=False)
    net.nodes[4].wait_ready(min_height=0)
    tip = max(net.heights(validators).values())
    net.wait_height(tip, [4], timeout=90)
    caught_up = net.height(4)
    net.wait_height(caught_up + 10, [4])  # it keeps following the tip
    status = net.call(4, "status")
    assert status["validator_info"]["power"] == 0  # a full node does not vote
    assert status["sync_info"]["synced_blocks"] >= 150  # it caught up by block sync
    assert status["sync_info"]["catching_up"] is False
    validator_keys = {v["pub_key"] for v in net.call(4, "validators")["validators"]}
    assert status["validator_info"]["pub_key"] not in validator_keys
    net.wait_txs_committed(hashes, [4])
    # a tx sent to the full node reaches the validators and is committed
    answer = net.submit_commit(4, net.transfer("arbiter", "merchant", 5))
    assert answer["code"] == 0, answer
    net.wait_txs_committed([answer["hash"]])
    net.assert_same_chain()


def test_two_of_four_down_halts_without_forking_and_resumes(
        tmp_path: Path, testnets: list[LocalTestnet]) -> None:
    net = _four(tmp_path, testnets)
    net.start()
    net.wait_connected()
    net.wait_height(3)
    net.stop(2)
    net.kill(3)  # one clean stop, one kill -9
    live = [0, 1]
    time.sleep(1.5)  # a block whose precommits were already out may still land
    halted = max(net.heights(live).values())
    pending = net.submit(0, net.transfer("buyer", "arbiter", 3))
    time.sleep(6)
    assert max(net.heights(live).values()) == halted, "20 of 40 power committed a block"
    assert net.tx_height(0, pending) is None
    net.nodes[2].start(wait=False)  # 30 of 40 again
    net.nodes[2].wait_ready(min_height=0)
    net.wait_height(halted + 3, [0, 1, 2], timeout=90)
    net.wait_txs_committed([pending], [0, 1, 2])
    net.nodes[3].start(wait=False)
    net.nodes[3].wait_ready(min_height=0)
    net.wait_height(max(net.heights([0, 1, 2]).values()) + 2, timeout=90)
    net.assert_same_chain()


# --- misbehaving peers ------------------------------------------------------------------------


def _garbage_connection(port: int) -> bool:
    """Send garbage to a p2p port; True when the node closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        try:
            sock.sendall(os.urandom(64) + b"\xff" * 4096)
            while sock.recv(4096):
                pass  # a handshake reply is fine; then it must hang up
        except (ConnectionResetError, BrokenPipeError):
            pass
        except TimeoutError:
            return False
    return True


def _peer_ids(net: LocalTestnet, i: int) -> set[str]:
    return {p["node_id"] for p in net.peers(i)}


def test_garbage_and_bad_signatures_get_a_peer_banned_and_the_network_goes_on(
        tmp_path: Path, testnets: list[LocalTestnet]) -> None:
    net = _four(tmp_path, testnets)
    net.start()
    net.wait_connected()
    net.wait_height(2)
    target = net.manifest.nodes[0]
    target_id = bytes.fromhex(target.node_id)
    chain_id = net.manifest.chain_id

    # raw garbage on the p2p port of every node: each hangs up
    for node in net.manifest.nodes:
        assert _garbage_connection(node.p2p_port), f"{node.name} kept a garbage connection"

    fakes: list[FakePeer] = []
    try:
        # a peer that completes the handshake, then sends an undecodable consensus message
        junk = FakePeer(chain_id, target.peer_address)
        fakes.append(junk)
        junk.start()
        wait_until(lambda: junk.node_id.hex() in _peer_ids(net, 0), 20, "fake peer connected")
        assert junk.send(target_id, CONSENSUS_CHANNEL, b"\xc1not msgpack at all")
        wait_until(lambda: junk.node_id.hex() not in _peer_ids(net, 0), 20,
                   "the junk peer dropped", details=lambda: net.logs([0]))

        # a peer that sends votes with invalid signatures (50 points each: banned at 100)
        forger = FakePeer(chain_id, target.peer_address)
        fakes.append(forger)
        forger.start()
        wait_until(lambda: forger.node_id.hex() in _peer_ids(net, 0), 20, "forger connected")
        height = net.call(0, "status")["consensus"]["height"]
        for k, h in enumerate((height, height + 1, height, height + 1)):
            vote = Vote(VoteType.PREVOTE, h, 0, None, int(time.time() * 1000) + k, 0,
                        signature=os.urandom(64))
            forger.send(target_id, CONSENSUS_CHANNEL, encode_message(vote))
        wait_until(lambda: forger.node_id.hex() not in _peer_ids(net, 0), 20,
                   "the forger dropped", details=lambda: net.logs([0]))

        # banned: both keep redialling (persistent peer) and are refused
        time.sleep(3)
        ids = _peer_ids(net, 0)
        assert junk.node_id.hex() not in ids and forger.node_id.hex() not in ids
        assert target_id not in junk.connected_peers()
        assert target_id not in forger.connected_peers()
        log = net.nodes[0].log_path.read_text(errors="replace")
        for fake in (junk, forger):
            assert f"peer {fake.node_id.hex()} banned" in log, "dropped but not banned"
        assert "invalid signature" in log
    finally:
        for fake in fakes:
            fake.stop()

    # the network is unaffected: the real peers are all there and blocks keep coming
    top = max(net.heights().values())
    net.wait_height(top + 3)
    real = {n.node_id for n in net.manifest.nodes}
    for i in range(4):
        assert real - {net.manifest.nodes[i].node_id} <= _peer_ids(net, i)
    net.assert_same_chain()


# --- the localnet commands ----------------------------------------------------------------------


def _free_base_port(count: int) -> int:
    for _ in range(50):
        base = free_port()
        if base + count > 65535:
            continue
        try:
            for port in range(base, base + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise AssertionError("no run of free ports found")


def test_localnet_up_status_down_through_the_cli(tmp_path: Path) -> None:
    out = tmp_path / "net"
    base = _free_base_port(6)
    run_cli("testnet", "--validators", "2", "--full-nodes", "1", "--out", str(out),
            "--base-port", str(base))
    try:
        up = run_cli("localnet", "up", "--dir", str(out), "--json", timeout=90)
        rows = json.loads(up.stdout)
        assert [r["state"] for r in rows] == ["started"] * 3
        pids = [r["pid"] for r in rows]
        again = run_cli("localnet", "up", "--dir", str(out), "--json", timeout=90)
        assert [r["state"] for r in json.loads(again.stdout)] == ["already running"] * 3

        def all_up() -> list | None:
            rows = json.loads(run_cli("localnet", "status", "--dir", str(out),
                                      "--json").stdout)
            ok = all(r["alive"] and (r["height"] or 0) >= 2 and r["peers"] == 2 for r in rows)
            return rows if ok else None

        rows = wait_until(all_up, 60, "3 nodes with blocks and 2 peers each")
        assert [r["role"] for r in rows] == ["validator", "validator", "full"]
        table = run_cli("localnet", "status", "--dir", str(out)).stdout
        assert table.splitlines()[0].split()[:4] == ["node", "role", "pid", "alive"]
        down = run_cli("localnet", "down", "--dir", str(out), "--json", timeout=60)
        assert [r["state"] for r in json.loads(down.stdout)] == ["stopped"] * 3
        assert not any(localnet.process_alive(pid) for pid in pids)
        assert not list(out.glob("node*/node.pid"))
        again = run_cli("localnet", "down", "--dir", str(out), "--json")
        assert [r["state"] for r in json.loads(again.stdout)] == ["not running"] * 3
    finally:
        localnet.down(out, grace=2.0)


def test_localnet_up_reports_a_node_that_cannot_start(tmp_path: Path) -> None:
    out = tmp_path / "net"
    base = _free_base_port(2)
    run_cli("testnet", "--validators", "1", "--out", str(out), "--base-port", str(base))
    try:
        with socket.socket() as squatter:  # another program holds node0's RPC port
            squatter.bind(("127.0.0.1", base))
            squatter.listen()
            proc = run_cli("localnet", "up", "--dir", str(out), check=False, timeout=90)
        line = assert_one_line_error(proc, "node0 exited during start-up")
        assert "node.log" in line
        assert not (out / "node0" / "node.pid").exists()
        rows = localnet.status(out)
        assert rows[0]["alive"] is False and rows[0]["stale_pid_file"] is False
    finally:
        localnet.down(out, grace=2.0)
