"""One validator in this process, txs handed straight to `Node.submit`: the node's own
per-tx cost without HTTP, JSON or a second process. For profiling:

    python -m benchmarks.inprocess --senders 400 --per-sender 50 [--deep]
    python -m cProfile -s tottime -m benchmarks.inprocess --deep | head -40

`--deep` submits everything before the first block is built (a deep mempool, as under
saturation); without it, txs arrive in bursts of 500 between blocks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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

CHAIN_ID = "bench-inprocess"


async def run(senders: int, per_sender: int, deep: bool) -> dict:
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
    to = [address_from_pubkey(k.public_key) for k in keys[1:] + keys[:1]]
    raws = [vm.sign_tx(key, CHAIN_ID, T.TRANSFER, nonce, 10, [to[i], 1])
            for nonce in range(per_sender) for i, key in enumerate(keys)]
    node = Node(home, network_factory=None)
    await node.start()
    tune_gc()
    first = node.engine.chain.last_height
    start = time.perf_counter()
    for i in range(0, len(raws), 500):
        await node.verifier.check_many(raws[i:i + 500])  # as an RPC batch is
        for raw in raws[i:i + 500]:
            node.submit(raw)
        if not deep:
            await asyncio.sleep(0)
    while len(node.mempool):
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - start
    blocks = node.engine.chain.last_height - first
    await node.stop()
    return {"txs": len(raws), "seconds": round(elapsed, 3), "reused_runs": node.app.reused_runs,
            "committed_tx_per_s": round(len(raws) / elapsed), "blocks": blocks, "deep": deep}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--senders", type=int, default=400)
    parser.add_argument("--per-sender", type=int, default=50)
    parser.add_argument("--deep", action="store_true")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.senders, args.per_sender, args.deep))))


if __name__ == "__main__":
    main()
