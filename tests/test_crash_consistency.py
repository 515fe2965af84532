"""Crash consistency: a real node process killed 100 times while it commits txs.

Each cycle starts `chainmerce start` and feeds it transfers with broadcast_tx_commit. The
node dies by SIGKILL either at a named crash point (node/crashpoints.py: around the
one-batch chain DB write, the WAL appends, the signing-state save, between Commit and
BlockFinalized), chosen at random with a random pass number, or at a random moment from
outside (`kill -9`). After every death:
- the doctor (node/doctor.py, the code behind `chainmerce doctor`) finds nothing wrong;
- no committed block was lost (the height never goes back);
- every tx the node acknowledged as committed is still indexed where it said.
At the end the node starts cleanly, commits new blocks with new txs, stops on SIGTERM, and
`chainmerce doctor` (the CLI) exits 0.
"""

from __future__ import annotations

import os
import random
import subprocess
import threading
import time
from pathlib import Path

import commerce_vm as vm
from commerce_vm import txtypes as T
from core.address import address_from_text
from core.hashing import sha256
from core.keys import PrivateKey
from node.client import Client, ClientError
from node.crashpoints import ENV, POINTS
from node.doctor import check_home
from node.home import Home
from storage.chaindb import ChainDB
from tests.e2e_helpers import CHAINMERCE, REPO, NodeHome, _env, init_home, run_cli

CYCLES = 100
FAST = {"timeout_commit_ms": 20, "empty_block_interval_ms": 50}
FEE = 10


class Cycle:
    """One run of the node that ends with SIGKILL."""

    def __init__(self, home: NodeHome, spec: str | None):
        env = _env()
        if spec:
            env[ENV] = spec
        home.starts += 1
        self.log = open(home.log_path, "ab")  # noqa: SIM115 (closed in finish)
        self.log.write(f"\n===== cycle start #{home.starts} {spec or 'kill -9'} =====\n".encode())
        self.log.flush()
        self.proc = subprocess.Popen([*CHAINMERCE, "start", "--home", str(home.path)],
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, cwd=REPO)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def finish(self, timeout: float = 20.0) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"crash point never fired in {timeout}s") from None
        finally:
            self.log.close()
        return code


def _next_nonce(home: Path, address: bytes) -> int:
    """The committed nonce, read from the stopped node's state through the VM's query."""
    from commerce_vm import query

    with ChainDB.open(Home(home).db_path) as db:
        return query.nonce(db.state, address)


def _acked_still_there(home: Path, acked: dict[bytes, int]) -> int:
    with ChainDB.open(Home(home).db_path) as db:
        top = db.last_committed_height() or 0
        for tx_hash, height in acked.items():
            location = db.txs.by_hash(tx_hash)
            assert location is not None and location.height == height, \
                f"acknowledged tx {tx_hash.hex()[:16]} (height {height}) is gone: {location}"
        return top


def _feed(client: Client, key: PrivateKey, chain_id: str, sink: bytes, nonce: int,
          cycle: Cycle, acked: dict[bytes, int], stop: threading.Event) -> None:
    """Commit transfers one by one until the node dies (or `stop`)."""
    while cycle.alive() and not stop.is_set():
        raw = vm.sign_tx(key, chain_id, T.TRANSFER, nonce, FEE, [sink, 1])
        try:
            result = client.call("broadcast_tx_commit", tx=raw.hex())
        except (ClientError, OSError):
            return  # the node died under us (or refused at startup): the tx may be lost
        if result["code"] != 0:
            acked[b"failed"] = -1  # a transfer that cannot fail failed: the test reports it
            return
        acked[sha256(raw)] = result["height"]
        nonce += 1


def test_one_hundred_kill_minus_nine(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("CRASH_SEED", "6")))
    home = init_home(tmp_path / "home", chain_id="chainmerce-crash", consensus=FAST)
    key = PrivateKey(home.seed("buyer"))
    sender = address_from_text(home.accounts["buyer"])
    sink = address_from_text(home.accounts["arbiter"])
    client = Client(home.url, timeout=3.0)
    acked: dict[bytes, int] = {}
    fired: dict[str, int] = {}
    top = 0
    for n in range(CYCLES):
        nonce = _next_nonce(home.path, sender) if top else 0
        if n % 3 == 2:
            spec, delay = None, rng.uniform(0.3, 1.2)  # kill -9 from outside
        else:
            point = rng.choice((*POINTS, "*"))
            nth = rng.randint(1, 200) if point == "*" else rng.randint(1, 25)
            spec, delay = f"{point}:{nth}", None
        cycle = Cycle(home, spec)
        stop = threading.Event()
        feeder = threading.Thread(target=_wait_then_feed, daemon=True,
                                  args=(client, key, home.chain_id, sink, nonce, cycle, acked,
                                        stop))
        feeder.start()
        if delay is not None:
            time.sleep(delay)
            cycle.proc.kill()
        code = cycle.finish()
        stop.set()
        feeder.join(10)
        assert code == -9, f"cycle {n}: node exited {code}, not by SIGKILL:\n{home.log_tail()}"
        if spec:
            fired[spec.split(":")[0]] = fired.get(spec.split(":")[0], 0) + 1
        report = check_home(home.path)
        assert report.ok, f"cycle {n} ({spec or 'kill -9'}): {report.problems}"
        assert b"failed" not in acked, f"cycle {n}: a committed transfer failed"
        new_top = _acked_still_there(home.path, acked)
        assert new_top >= top, f"cycle {n}: height went back from {top} to {new_top}"
        top = new_top
    assert b"failed" not in acked, "a committed transfer failed"
    assert len(acked) >= 50, f"only {len(acked)} txs were acknowledged in {CYCLES} cycles"
    assert len(fired) >= 6, fired
    # A clean run after all that: new blocks and new txs commit, SIGTERM stops it cleanly.
    home.start()
    before = client.call("status")["sync_info"]["latest_block_height"]
    assert before >= top
    nonce = client.call("account", address=home.accounts["buyer"])["next_nonce"]
    raw = vm.sign_tx(key, home.chain_id, T.TRANSFER, nonce, FEE, [sink, 1])
    result = client.call("broadcast_tx_commit", tx=raw.hex())
    assert result["code"] == 0 and result["height"] > top
    home.wait_height(before + 3)
    assert home.stop() == 0
    doctor = run_cli("doctor", "--home", str(home.path))
    assert "ok: no problems found" in doctor.stdout
    _acked_still_there(home.path, acked)


def _wait_then_feed(client: Client, key: PrivateKey, chain_id: str, sink: bytes, nonce: int,
                    cycle: Cycle, acked: dict[bytes, int], stop: threading.Event) -> None:
    while cycle.alive() and not stop.is_set():  # RPC comes up before consensus starts
        try:
            client.call("health")
            break
        except (ClientError, OSError):
            time.sleep(0.02)
    _feed(client, key, chain_id, sink, nonce, cycle, acked, stop)
