"""Crash consistency: kill -9 a process while it writes big batches; reopen; check.

Every batch overwrites the same keys with its own number and replaces the previous batch's
temporary keys, so any partly applied batch shows up as keys that disagree.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from storage.chaindb import ChainDB
from storage.leveldb import LevelDBStore
from storage.txindex import TxIndexEntry

ROOT = Path(__file__).resolve().parent.parent
SHARED_KEYS = 150
VALUE_SIZE = 4000
KILLS = 8

RAW_WRITER = textwrap.dedent(
    f"""
    import os, sys
    from storage.kv import WriteBatch
    from storage.leveldb import LevelDBStore
    store = LevelDBStore(sys.argv[1], write_buffer_bytes=2 * 1024 * 1024)
    raw = store.get(b"last")
    n = 0 if raw is None else int(raw)
    print("ready", flush=True)
    pad = os.urandom({VALUE_SIZE})
    while True:
        n += 1
        batch = WriteBatch()
        stamp = b"%d:" % n
        for j in range({SHARED_KEYS}):
            batch.put(b"shared/%04d" % j, stamp + pad)
        for j in range(20):
            batch.delete(b"tmp/%d/%02d" % (n - 1, j))
            batch.put(b"tmp/%d/%02d" % (n, j), stamp)
        batch.put(b"last", b"%d" % n)
        store.write(batch, sync=False)
    """
)

CHAIN_WRITER = textwrap.dedent(
    f"""
    import os, sys
    from storage.chaindb import ChainDB
    from storage.txindex import TxIndexEntry
    db = ChainDB.open(sys.argv[1], write_buffer_bytes=2 * 1024 * 1024)
    h = db.last_committed_height()
    if h is None:
        db.write_genesis_state([], b"genesis", 0)
        h = 0
    print("ready", flush=True)
    pad = os.urandom({VALUE_SIZE})
    while True:
        h += 1
        stamp = b"%d:" % h
        changes = [(b"acct/%04d" % j, stamp + pad) for j in range({SHARED_KEYS})]
        changes.append((b"order/%d" % (h - 1), None))
        changes.append((b"order/%d" % h, stamp))
        entries = [
            TxIndexEntry(h.to_bytes(8, "big") + i.to_bytes(24, "big"), i, 0, 1, [bytes(20)])
            for i in range(50)
        ]
        db.commit(
            height=h, block_hash=h.to_bytes(32, "big"), block_bytes=stamp + pad,
            commit_bytes=stamp, state_changes=changes, app_hash=stamp, tx_entries=entries,
        )
    """
)


def run_and_kill(script: str, path: Path, rng: random.Random) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE, env=env, cwd=ROOT
    )
    try:
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.05, 0.4))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stdout.close()


def stamp_of(value: bytes) -> int:
    return int(value.split(b":", 1)[0])


@pytest.mark.slow
def test_kv_batches_survive_kill_9_whole_or_not_at_all(tmp_path):
    rng = random.Random(1)
    path = tmp_path / "db"
    progress = []
    for _ in range(KILLS):
        run_and_kill(RAW_WRITER, path, rng)
        store = LevelDBStore(path)
        try:
            last = int(store.get(b"last") or b"0")
            progress.append(last)
            shared = [v for _, v in store.iterate(b"shared/")]
            assert len(shared) == (SHARED_KEYS if last else 0)
            assert {stamp_of(v) for v in shared} <= {last}
            tmp = list(store.iterate(b"tmp/"))
            assert len(tmp) == (20 if last else 0)
            assert all(k.startswith(b"tmp/%d/" % last) and stamp_of(v) == last for k, v in tmp)
        finally:
            store.close()
    assert progress == sorted(progress) and progress[-1] > KILLS  # it really wrote batches


@pytest.mark.slow
def test_chaindb_commit_survives_kill_9_block_and_state_together(tmp_path):
    rng = random.Random(2)
    path = tmp_path / "chain"
    heights = []
    for _ in range(KILLS):
        run_and_kill(CHAIN_WRITER, path, rng)
        with ChainDB.open(path) as db:  # open itself checks blocks and state agree
            h = db.last_committed_height() or 0
            heights.append(h)
            assert db.state_meta().height == h
            if h:
                assert stamp_of(db.blocks.get_block(h)) == h
                assert db.blocks.get_commit(h) == b"%d:" % h
                assert db.state_meta().app_hash == b"%d:" % h
                assert {stamp_of(v) for _, v in db.state.iterate(b"acct/")} == {h}
                assert list(db.state.iterate(b"order/")) == [(b"order/%d" % h, b"%d:" % h)]
                assert len(db.txs.by_height(h)) == 50
            assert db.blocks.get_block(h + 1) is None
            assert db.txs.by_height(h + 1) == []
    assert heights == sorted(heights) and heights[-1] > KILLS


def test_tx_entry_shape_used_by_the_writer_is_valid():
    # Guards the subprocess script above against drifting from the TxIndexEntry API.
    db = ChainDB.open(None, "memory")
    db.commit(
        height=1, block_hash=b"\x01" * 32, block_bytes=b"b", commit_bytes=b"c",
        state_changes=[], app_hash=b"a",
        tx_entries=[TxIndexEntry(b"\x00" * 32, 0, 0, 1, [bytes(20)])],
    )
    assert db.txs.by_height(1)[0].tx_hash == b"\x00" * 32
