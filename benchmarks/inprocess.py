"""One validator in this process, txs handed straight to `Node.submit`: the node's own
per-tx cost without HTTP, JSON or a second process. For profiling:

    python -m benchmarks.inprocess --senders 400 --per-sender 50 [--deep] [--mixed]
    python -m cProfile -s tottime -m benchmarks.inprocess --deep | head -40

`--deep` submits everything before the first block is built (a deep mempool, as under
saturation); without it, txs arrive in bursts of 500 between blocks. The workload is
transfers; with `--mixed`, 20 of the senders list an item each first (not timed) and the
others alternate buys of those items with transfers to their merchants. `cpu_seconds`
(the CPU time of the process and its verify workers over the timed part) is steadier than wall time on a shared
machine: compare two commits by running each a few times in turns.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

import commerce_vm as vm
from commerce_vm import txtypes as T
from core.address import address_from_pubkey, address_to_text
from core.keys import PrivateKey
from node.genesis import load_genesis
from node.home import Home, init_home
from node.node import Node, tune_gc

from .common import cpu_seconds

CHAIN_ID = "bench-inprocess"


MERCHANTS = 20


def _workload(keys: list[PrivateKey], per_sender: int, mixed: bool) -> tuple[list, list]:
    """(untimed setup txs, timed txs), each sender's in nonce order."""
    if not mixed:
        to = [address_from_pubkey(k.public_key) for k in keys[1:] + keys[:1]]
        return [], [vm.sign_tx(key, CHAIN_ID, T.TRANSFER, nonce, 10, [to[i], 1])
                    for nonce in range(per_sender) for i, key in enumerate(keys)]
    merchants, buyers = keys[:MERCHANTS], keys[MERCHANTS:]
    setup = [vm.sign_tx(m, CHAIN_ID, T.LIST, 0, 100, [0, "item", 100, 10**9, 1000, 1000,
                                                       "here", b""]) for m in merchants]
    timed = []
    for nonce in range(per_sender):
        for i, key in enumerate(buyers):
            if nonce % 2 == 0:  # listing ids are 1..MERCHANTS, in the setup block's order
                timed.append(vm.sign_tx(key, CHAIN_ID, T.BUY, nonce, 100,
                                        [1 + i % MERCHANTS, 1, 100, None]))
            else:
                merchant = address_from_pubkey(merchants[i % MERCHANTS].public_key)
                timed.append(vm.sign_tx(key, CHAIN_ID, T.TRANSFER, nonce, 100, [merchant, 1]))
    return setup, timed


async def _drain(node: Node) -> None:
    while len(node.mempool):
        await asyncio.sleep(0.005)


async def run(senders: int, per_sender: int, deep: bool, mixed: bool = False) -> dict:
    home = Path(tempfile.mkdtemp(prefix="cm-inprocess-"))
    init_home(home, CHAIN_ID, dev=True, config_overrides={
        ("rpc", "listen"): "127.0.0.1:0", ("consensus", "timeout_commit_ms"): 100,
        ("consensus", "empty_block_interval_ms"): 20, ("mempool", "max_txs"): 1_000_000,
        ("mempool", "max_txs_per_sender"): 1_000_000, ("consensus", "max_block_txs"): 5000,
        ("node", "log_level"): "warning"})
    keys = [PrivateKey(i.to_bytes(4, "big") * 8) for i in range(1, senders + 1)]
    genesis = load_genesis(Home(home).genesis_file).to_dict()
    for key in keys:
        genesis["params"]["initial_balances"][
            address_to_text(address_from_pubkey(key.public_key))] = 10**12
    Home(home).genesis_file.write_text(json.dumps(genesis))
    setup, raws = _workload(keys, per_sender, mixed)
    node = Node(home, network_factory=None)
    await node.start()
    tune_gc()
    for raw in setup:
        node.submit(raw)
    await _drain(node)
    first = node.engine.chain.last_height
    start, cpu_start, own_start = time.perf_counter(), cpu_seconds(os.getpid()), time.process_time()
    for i in range(0, len(raws), 500):
        await node.verifier.check_many(raws[i:i + 500])  # as an RPC batch is
        for raw in raws[i:i + 500]:
            node.submit(raw)
        if not deep:
            await asyncio.sleep(0)
    await _drain(node)
    elapsed = time.perf_counter() - start
    cpu, own = cpu_seconds(os.getpid()) - cpu_start, time.process_time() - own_start
    blocks = node.engine.chain.last_height - first
    await node.stop()
    return {"txs": len(raws), "seconds": round(elapsed, 3), "cpu_seconds": round(cpu, 3),
            "cpu_seconds_without_workers": round(own, 3),
            "cpu_us_per_tx": round(cpu / len(raws) * 1e6, 1), "reused_runs": node.app.reused_runs,
            "committed_tx_per_s": round(len(raws) / elapsed), "blocks": blocks, "deep": deep,
            "mixed": mixed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--senders", type=int, default=400)
    parser.add_argument("--per-sender", type=int, default=50)
    parser.add_argument("--deep", action="store_true")
    parser.add_argument("--mixed", action="store_true", help="buys and transfers")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.senders, args.per_sender, args.deep, args.mixed))))


if __name__ == "__main__":
    main()
