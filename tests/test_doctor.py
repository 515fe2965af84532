"""`chainmerce doctor`: clean on a real chain, and each kind of damage is named in one line.

One chain is built once (a real node on LevelDB with commerce txs in its blocks, stopped),
then every damage case works on its own copy of the home.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from commerce_vm import txtypes as T
from consensus.block import Block
from consensus.messages import CommitCertificate
from core.address import address_from_text
from core.encoding import decode, encode
from node.app import tx_record_key
from node.doctor import DoctorError, check_home
from node.home import Home
from storage.kv import WriteBatch
from storage.layout import NS_BLOCK, NS_COMMIT, NS_META, NS_STATE, u64
from storage.leveldb import LevelDBStore
from storage.txindex import SUB_ACCOUNT, SUB_HASH
from tests.e2e_helpers import REPO, _env, assert_one_line_error, run_cli
from tests.node_fixtures import start_node

LISTING = [0, "Tea bowl", 250, 5, 0, 0, "Kyoto", b"\x01"]


async def _build_chain(home: Path) -> None:
    async with aiohttp.ClientSession() as session:
        live = await start_node(home, session, backend="leveldb")
        try:
            await live.wait_height(1)
            sink = address_from_text(live.addr("arbiter"))
            txs = [live.sign("merchant", T.LIST, 0, LISTING),
                   live.sign("buyer", T.BUY, 0, [1, 1, 250, None])]
            txs += [live.sign("buyer", T.TRANSFER, n, [sink, 1 + n]) for n in range(1, 13)]
            for raw in txs:
                reply = await live.rpc("broadcast_tx_sync", tx=raw)
                assert reply["code"] == 0, reply
            target = live.node.engine.chain.last_height + 3
            await live.wait_height(target)
            while len(live.node.mempool):
                await asyncio.sleep(0.02)
            await live.wait_height(live.node.engine.chain.last_height + 2)
        finally:
            await live.node.stop()


@pytest.fixture(scope="module")
def chain_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("doctor") / "home"
    asyncio.run(_build_chain(home))
    return home


@pytest.fixture
def copy_home(chain_home: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(chain_home, target)
    return target


def _store(home: Path) -> LevelDBStore:
    return LevelDBStore(Home(home).db_path)


def _edit(home: Path, change: Callable[[LevelDBStore, WriteBatch], None]) -> None:
    store = _store(home)
    try:
        batch = WriteBatch()
        change(store, batch)
        store.write(batch, sync=True)
    finally:
        store.close()


def _block_with_txs(store: LevelDBStore) -> tuple[int, Block]:
    for key, raw in store.iterate(NS_BLOCK):
        block = Block.from_list(decode(raw, 1 << 26))
        if len(block.txs) >= 2:
            return int.from_bytes(key[1:], "big"), block
    raise AssertionError("no block with two txs")


def test_a_real_chain_is_clean(chain_home: Path) -> None:
    report = check_home(chain_home, full=True)
    assert report.ok, report.problems
    assert report.latest_height is not None and report.latest_height >= 4
    assert report.blocks_checked == report.latest_height
    assert report.txs_checked == 14
    assert report.state_keys > 0


def _drop_block(store, batch) -> None:
    batch.delete(NS_BLOCK + u64(2))


def _tamper_state_value(store, batch) -> None:
    key, value = next((k, v) for k, v in store.iterate(NS_STATE) if not k.startswith(b"S~"))
    batch.put(key, value + b"\x00")


def _drop_expiry(store, batch) -> None:
    key, _ = next(store.iterate(NS_STATE + b"x/"))  # the buy's ship_by entry
    batch.delete(key)


def _bad_order(store, batch) -> None:
    key, value = next(store.iterate(NS_STATE + b"o/"))
    fields = decode(value, 1 << 20)
    fields[10] = "soon"  # ship_by, which the expiry check turns into a key
    batch.put(key, encode(fields))


def _drop_results(store, batch) -> None:
    from core.hashing import sha256

    _, block = _block_with_txs(store)
    batch.delete(NS_META + tx_record_key(sha256(block.txs[-1])))


def _misindex_tx(store, batch) -> None:
    height, block = _block_with_txs(store)
    from core.hashing import sha256

    batch.put(SUB_HASH + sha256(block.txs[0]), u64(height) + (1).to_bytes(4, "big") + bytes(4))


def _bad_commit_signature(store, batch) -> None:
    raw = store.get(NS_COMMIT + u64(3))
    cert = CommitCertificate.from_list(decode(raw, 1 << 20))
    fields = cert.to_list()
    index, ts, sig = fields[-1][0]
    fields[-1][0] = [index, ts, bytes([sig[0] ^ 1]) + sig[1:]]
    batch.put(NS_COMMIT + u64(3), encode(fields))


def _swap_blocks(store, batch) -> None:
    two, three = store.get(NS_BLOCK + u64(2)), store.get(NS_BLOCK + u64(3))
    batch.put(NS_BLOCK + u64(2), three)
    batch.put(NS_BLOCK + u64(3), two)


@pytest.mark.parametrize(("damage", "needle"), [
    (_drop_block, "block 2: missing"),
    (_tamper_state_value, "recomputing the app hash"),
    (_drop_expiry, "the expiry index disagrees with the orders (differences: 1,"),
    (_bad_order, "state: an order record does not decode ("),
    (_drop_results, "no tx record (result)"),
    (_misindex_tx, "is indexed at"),
    (_bad_commit_signature, "block 3: commit certificate"),
    (_swap_blocks, "block 2: stored under height 2 but says 3"),
])
def test_each_kind_of_damage_is_reported(copy_home: Path, damage, needle: str) -> None:
    _edit(copy_home, damage)
    report = check_home(copy_home)
    assert not report.ok
    assert any(needle in p for p in report.problems), report.problems
    assert all("\n" not in p for p in report.problems)


def test_full_checks_the_account_index(copy_home: Path) -> None:
    def point_elsewhere(store, batch) -> None:
        key, tx_hash = next(store.iterate(SUB_ACCOUNT))
        batch.put(key, bytes(32))

    _edit(copy_home, point_elsewhere)
    assert check_home(copy_home).ok  # the default run does not scan the list indexes
    report = check_home(copy_home, full=True)
    assert any("account index" in p for p in report.problems), report.problems


def test_torn_wal_tail_is_fine_but_a_bad_signing_state_is_not(copy_home: Path) -> None:
    home = Home(copy_home)
    with open(home.wal_file, "ab") as f:
        f.write(b"\x00\x00\x00\x10torn")  # what a crash mid-append leaves
    assert check_home(copy_home).ok
    home.signing_state_file.write_bytes(b"CMSIGN01garbage")
    report = check_home(copy_home)
    assert [p for p in report.problems if p.startswith("signing state:")], report.problems


def test_doctor_refuses_what_it_cannot_check(tmp_path: Path, copy_home: Path) -> None:
    with pytest.raises(DoctorError, match="not a node home"):
        check_home(tmp_path / "nothing")
    store = _store(copy_home)  # a running node holds this lock
    try:
        with pytest.raises(DoctorError, match="stop the node"):
            check_home(copy_home)
    finally:
        store.close()


def test_cli_exit_codes_and_output(copy_home: Path) -> None:
    clean = run_cli("doctor", "--home", str(copy_home), "--json")
    assert json.loads(clean.stdout)["ok"] is True
    _edit(copy_home, _drop_results)
    broken = run_cli("doctor", "--home", str(copy_home), check=False)
    assert broken.returncode == 1
    assert "no tx record (result)" in broken.stdout and "Traceback" not in broken.stderr
    # A locked DB (the node is running) is one clear line, not a traceback.
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys,time; from storage.leveldb import LevelDBStore; "
         f"s = LevelDBStore({str(Home(copy_home).db_path)!r}); print('held', flush=True); "
         "time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, cwd=REPO, env=_env())
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        locked = run_cli("doctor", "--home", str(copy_home), check=False)
        assert_one_line_error(locked, "locked", "stop the node")
    finally:
        holder.kill()
        holder.wait()
