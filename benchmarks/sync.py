"""`python -m benchmarks.sync [--txs 100000] --out DIR`

Builds a chain of at least --txs transfers on a one-validator testnet (pre-signed, submitted
at saturation from a separate process), then starts a fresh full node and times it from
start until it has block-synced to the tip. Reports blocks/s and txs/s of the sync and their
ratio to the sync ceiling (cores x ed25519 verify rate). Results: DIR/sync.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from . import net
from .common import fmt, measure_ceiling, ratio, table, write_json
from .throughput import Bench, add_common_args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sync",
                                     description=__doc__.split("\n\n")[1])
    parser.add_argument("--txs", type=int, default=100_000, help="txs in the chain to sync")
    parser.add_argument("--accounts", type=int, default=4_000)
    add_common_args(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.txs, args.accounts = min(args.txs, 5_000), 400

    def log(line: str) -> None:
        print(line, flush=True)

    log("measuring the ceiling (ed25519 verify/s on one core) ...")
    ceiling = measure_ceiling(args.quick)
    cores = ceiling["cores_usable"]
    ceiling_tx = cores * ceiling["verify_per_s_one_core"]
    bench = Bench(args.out / "sync", 1, args.accounts, 1, full_nodes=1)
    full = bench.manifest.nodes[1]
    try:
        bench.start(["node0"])
        log(f"building a chain of {args.txs:,} transfers on one validator ...")
        built = 0
        chunk = 20_000
        build_seconds = 0.0
        while built < args.txs:
            items = [bench.wl.transfer() for _ in range(min(chunk, args.txs - built))]
            summary, _ = bench.stage("build", items, batch=args.batch)
            if summary["lost"] or summary["rejected"]:
                raise RuntimeError(f"building the chain lost txs: {summary}")
            built += summary["committed"]
            build_seconds += summary["seconds"]
            log(f"  {built:,} txs committed ({summary['committed_tx_per_s']:.0f} tx/s)")
        tip = net.height(bench.manifest, 0)
        log(f"chain: {tip} blocks, {built:,} txs; starting a fresh full node ...")
        t0 = time.monotonic()
        bench.start([full.name])
        bench.meter.begin()
        client = net.client(bench.manifest, 1, timeout=10)
        reached = 0
        while True:
            reached = int(client.call("status")["sync_info"]["latest_block_height"])
            if reached >= tip:
                break
            bench.meter.sample()
            time.sleep(0.05)
        seconds = time.monotonic() - t0
        nodes = bench.meter.end()
    finally:
        bench.stop()
    txs_per_s = built / seconds
    result: dict[str, Any] = {
        "benchmark": "sync", "quick": args.quick,
        "command": " ".join(["python -m benchmarks.sync", *(argv or sys.argv[1:])]),
        "machine": ceiling, "ceiling_tx_per_s": ceiling_tx,
        "chain_blocks": tip, "chain_txs": built, "build_tx_per_s": round(built / build_seconds, 1),
        "sync_seconds": round(seconds, 2), "note": "from process start to the tip, start-up included",
        "sync_blocks_per_s": round(tip / seconds, 1), "sync_tx_per_s": round(txs_per_s, 1),
        "sync_tx_per_s_ratio": ratio(txs_per_s, ceiling_tx),
        "targets": {"sync_ratio_target": 0.7, "sync_ratio_met": ratio(txs_per_s, ceiling_tx) >= 0.7},
        "nodes": nodes,
    }
    path = write_json(args.out, "sync.json", result)
    print(table([(fmt(tip), fmt(built), fmt(result["sync_seconds"], 2),
                  fmt(result["sync_blocks_per_s"]), fmt(result["sync_tx_per_s"]),
                  fmt(ceiling_tx), f"{result['sync_tx_per_s_ratio']:.3f}")],
                ("blocks", "txs", "sync s", "blocks/s", "tx/s", "ceiling tx/s", "ratio")))
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
