"""`python -m benchmarks.throughput --validators 4 --txs 40000 --out DIR`

Builds a local testnet, pre-signs a mixed commerce workload (list, buy, ship, confirm,
review, reward, transfer across thousands of accounts) stage by stage before each stage's
clock starts, submits it from a separate process over JSON-RPC at saturation, then runs
a steady offered-rate stage, and reports committed tx/s, submit->commit latency, blocks/s,
CPU and peak RSS per node and lost txs, each throughput also as a ratio to the ceiling
(cores x ed25519 verify rate / validators). Results: DIR/throughput-v{N}.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from . import net
from .common import (
    DEFAULT_OUT,
    ProcessMeter,
    fmt,
    latency_summary,
    measure_ceiling,
    ratio,
    table,
    write_json,
)
from .stages import block_order, check_ids, run_stage, summarize
from .workload import Workload


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results directory")
    parser.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    parser.add_argument("--batch", type=int, default=250, help="txs per JSON-RPC batch POST")


class Bench:
    """A running benchmark testnet with its workload and meters."""

    def __init__(self, out: Path, validators: int, accounts: int, merchants: int,
                 full_nodes: int = 0, consensus: dict[str, int] | None = None):
        self.root = out.absolute() / f"testnet-v{validators}"
        self.validators = validators
        t = time.monotonic()
        accts = [net.account(i) for i in range(accounts)]
        self.manifest = net.build(self.root, validators, full_nodes, accts, consensus=consensus)
        self.wl = Workload(self.manifest.chain_id, accts, merchants)
        self.keygen_seconds = time.monotonic() - t
        self.pids: dict[str, int] = {}
        self.meter = ProcessMeter({})

    def start(self, names: list[str] | None = None) -> None:
        self.pids.update(net.start(self.root, names))
        self.meter = ProcessMeter(dict(self.pids))

    def stop(self) -> None:
        net.stop(self.root)

    @property
    def validator_indices(self) -> list[int]:
        return list(range(self.validators))

    def stage(self, name: str, items: list, *, mode: str = "saturation",
              rate: float | None = None, batch: int = 250, keep: bool = False,
              drain: float = 60.0) -> tuple[dict[str, Any], dict[str, Any]]:
        result = run_stage(self.manifest, items, self.meter, submit_to=self.validator_indices,
                           mode=mode, rate=rate, batch=batch, keep_block_hashes=keep,
                           drain_timeout=drain)
        return summarize(name, items, result, mode, rate), result

    def setup(self, batch: int) -> dict[str, Any]:
        """Unmeasured: merchants list items; the listing ids are read from the blocks."""
        items = self.wl.setup()
        summary, result = self.stage("setup", items, batch=batch, keep=True)
        self.next_listing, self.next_order = self.wl.assign_ids(items, block_order(result), 1, 1)
        return summary


def run_measured(bench: Bench, txs: int, batch: int, log) -> list[dict[str, Any]]:
    """The four dependent stages at saturation; ids read between stages (clock paused)."""
    size = max(8, txs // 4)
    wl = bench.wl
    out = []
    t = time.monotonic()
    items = wl.stage_buy(size)
    log(f"  signed {len(items)} txs in {time.monotonic() - t:.1f}s")
    summary, result = bench.stage("buy+list+transfer", items, batch=batch, keep=True)
    out.append(summary)
    log(_stage_line(summary))
    bench.next_listing, bench.next_order = wl.assign_ids(items, block_order(result),
                                                         bench.next_listing, bench.next_order)
    check_ids(net.client(bench.manifest), wl)
    for name, build in (("ship+transfer", wl.stage_ship), ("confirm+transfer", wl.stage_confirm),
                        ("review+reward+transfer", wl.stage_review_reward)):
        items = build(size)
        summary, _ = bench.stage(name, items, batch=batch)
        out.append(summary)
        log(_stage_line(summary))
    return out


def _stage_line(s: dict[str, Any]) -> str:
    lat = s["latency"]
    return (f"  {s['stage']:<24} {s['committed']:>7} txs in {s['seconds']:7.2f}s = "
            f"{s['committed_tx_per_s']:8.1f} tx/s  p50 {fmt(lat['p50_s'], 2)}s "
            f"p99 {fmt(lat['p99_s'], 2)}s  blocks/s {s['blocks_per_s']}  lost {s['lost']}  "
            f"retries {s['mempool_full_retries']}"
            + (f"  submitter CPU {s['submitter']['cpu_percent_of_one_core']}%"
               if s.get("submitter") else "")
            + (f"  parked {s['parked_at_submit']}" if s["parked_at_submit"] else "")
            + (f"\n    rejected {s['rejected']} {s['rejected_kinds']}: {s['rejected_examples']}"
               if s["rejected"] else "")
            + (f"\n    lost e.g. {s['lost_examples']}" if s["lost"] else ""))


def combine(stages: list[dict[str, Any]]) -> dict[str, Any]:
    committed = sum(s["committed"] for s in stages)
    seconds = sum(s["seconds"] for s in stages)
    blocks = sum(s["blocks"] for s in stages)
    return {"committed": committed, "seconds": round(seconds, 3),
            "committed_tx_per_s": round(committed / seconds, 1) if seconds else 0.0,
            "blocks_per_s": round(blocks / seconds, 2) if seconds else 0.0,
            "lost": sum(s["lost"] for s in stages),
            "committed_twice": sum(s["committed_twice"] for s in stages)}


def node_stats(bench: Bench, stages: list[dict[str, Any]]) -> dict[str, Any]:
    """Per node over the measured stages: CPU seconds and % of one core, peak RSS, and the
    spread of RSS samples after the first stage (flatness)."""
    out = {}
    for name in bench.pids:
        seconds = sum(s["nodes"][name]["window_seconds"] for s in stages)
        cpu = sum(s["nodes"][name]["cpu_seconds"] or 0 for s in stages)
        tail = _after_warmup(bench.meter.rss_samples.get(name, []))
        out[name] = {"cpu_seconds": round(cpu, 2),
                     "cpu_percent_of_one_core": round(100 * cpu / seconds, 1) if seconds else None,
                     "peak_rss_mb": max(s["nodes"][name]["peak_rss_mb"] for s in stages),
                     "rss_mb_min_after_warmup": round(min(tail) / 1024, 1) if tail else None,
                     "rss_mb_max_after_warmup": round(max(tail) / 1024, 1) if tail else None,
                     # the target is a spread of at most 0.10 over a 10-minute run
                     "rss_spread_after_warmup": _spread(tail),
                     "rss_mb_by_minute": bench.meter.rss_by_minute(name),
                     "anon_rss_spread_after_warmup":
                     _spread(_after_warmup(bench.meter.anon_samples.get(name, []))),
                     "anon_rss_mb_by_minute": bench.meter.rss_by_minute(name, anonymous=True),
                     "rss_spread_last_5_min": _spread_last(bench.meter, name, 300.0)}
    return out


def _after_warmup(samples: list[int]) -> list[int]:
    """The samples after the first quarter of the run (all of them if that leaves none)."""
    return samples[len(samples) // 4:] or samples


def _spread(samples: list[int]) -> float | None:
    """(max - min) / min; None without samples or with a zero one (RssAnon not read)."""
    if not samples or min(samples) <= 0:
        return None
    return round((max(samples) - min(samples)) / min(samples), 3)


def _spread_last(meter: ProcessMeter, name: str, seconds: float) -> float | None:
    """(max - min) / min of the RSS samples of the last `seconds` of a run at least twice
    that long: whether RSS has levelled off once the caches are full (None if shorter)."""
    samples, times = meter.rss_samples.get(name, []), meter.rss_times.get(name, [])
    if not times or times[-1] - times[0] < 2 * seconds:
        return None
    return _spread([rss for rss, t in zip(samples, times, strict=True)
                    if t >= times[-1] - seconds])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.throughput",
                                     description=__doc__.split("\n\n")[1])
    parser.add_argument("--validators", type=int, default=4)
    parser.add_argument("--txs", type=int, default=40_000, help="txs over the measured stages")
    parser.add_argument("--accounts", type=int, default=4_000)
    parser.add_argument("--merchants", type=int, default=50)
    parser.add_argument("--steady-fraction", type=float, default=0.5,
                        help="offered rate of the steady stage, as a fraction of saturation")
    parser.add_argument("--steady-seconds", type=float, default=30.0)
    add_common_args(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.txs, args.accounts, args.merchants = min(args.txs, 4_000), 400, 10
        args.steady_seconds = min(args.steady_seconds, 8.0)

    def log(line: str) -> None:
        print(line, flush=True)

    log("measuring the ceiling (ed25519 verify/s on one core) ...")
    ceiling = measure_ceiling(args.quick)
    cores = ceiling["cores_usable"]
    ceiling_tx = cores * ceiling["verify_per_s_one_core"] / args.validators
    log(f"  {fmt(ceiling['verify_per_s_one_core'])} verify/s/core x {cores} cores / "
        f"{args.validators} validators = ceiling {fmt(round(ceiling_tx))} tx/s")
    bench = Bench(args.out, args.validators, args.accounts, args.merchants)
    log(f"testnet: {bench.root} ({args.validators} validators, {args.accounts} funded accounts)")
    try:
        bench.start()
        setup = bench.setup(args.batch)
        log(_stage_line(setup))
        stages = run_measured(bench, args.txs, args.batch, log)
        overall = combine(stages)
        rate = max(1.0, overall["committed_tx_per_s"] * args.steady_fraction)
        steady_items = bench.wl.stage_steady(max(20, int(rate * args.steady_seconds)))
        steady, _ = bench.stage("steady", steady_items, mode="rate", rate=rate,
                                batch=max(10, min(args.batch, int(rate / 10) or 10)))
        log(_stage_line(steady))
        nodes = node_stats(bench, stages + [steady])
    finally:
        bench.stop()
    all_stages = [setup, *stages, steady]
    saturation_latency = _merged_latency(stages)
    result = {
        "benchmark": "throughput", "validators": args.validators, "quick": args.quick,
        "command": " ".join(["python -m benchmarks.throughput", *(argv or sys.argv[1:])]),
        "txs_requested": args.txs, "accounts": args.accounts, "merchants": args.merchants,
        "machine": ceiling,
        "ceiling_tx_per_s": round(ceiling_tx, 1),
        "committed_tx_per_s": overall["committed_tx_per_s"],
        "committed_tx_per_s_ratio": ratio(overall["committed_tx_per_s"], ceiling_tx),
        "steady_offered_tx_per_s": round(rate, 1),
        "steady_committed_tx_per_s": steady["committed_tx_per_s"],
        "steady_committed_tx_per_s_ratio": ratio(steady["committed_tx_per_s"], ceiling_tx),
        "latency_steady": steady["latency"],
        "latency_steady_by_minute": steady["by_minute"],
        "latency_saturation": saturation_latency,
        "p50_s": steady["latency"]["p50_s"], "p90_s": steady["latency"]["p90_s"],
        "p99_s": steady["latency"]["p99_s"],
        "blocks_per_s": overall["blocks_per_s"],
        "lost": sum(s["lost"] for s in all_stages),
        "committed_twice": sum(s["committed_twice"] for s in all_stages),
        "rejected": sum(s["rejected"] for s in all_stages),
        "mempool_full_retries": sum(s["mempool_full_retries"] for s in all_stages),
        "measured": overall, "stages": all_stages, "nodes": nodes,
        "targets": _targets(args.validators, overall, steady, ceiling_tx, nodes),
    }
    path = write_json(args.out, f"throughput-v{args.validators}.json", result)
    print(report(result))
    print(f"results: {path}")
    return 0 if result["lost"] == 0 else 1


def _merged_latency(stages: list[dict[str, Any]]) -> dict[str, Any]:
    # Percentiles of the union need the raw values; the stages keep only summaries, so the
    # saturation figure is the committed-weighted worst of the stages' percentiles.
    merged = latency_summary([])
    for key in ("p50_s", "p90_s", "p99_s", "max_s"):
        values = [s["latency"][key] for s in stages if s["latency"][key] is not None]
        merged[key] = max(values) if values else None
    merged["count"] = sum(s["latency"]["count"] for s in stages)
    merged["note"] = "worst stage's percentile"
    return merged


def _targets(validators: int, overall: dict[str, Any], steady: dict[str, Any],
             ceiling_tx: float, nodes: dict[str, Any]) -> dict[str, Any]:
    got = ratio(overall["committed_tx_per_s"], ceiling_tx)
    spreads = [n["rss_spread_after_warmup"] for n in nodes.values()
               if n["rss_spread_after_warmup"] is not None]
    run_seconds = overall["seconds"] + steady["seconds"]
    targets: dict[str, Any] = {"tx_per_s_ratio_target": 0.5, "tx_per_s_ratio": got,
                               "tx_per_s_met": got >= 0.5, "lost_met": overall["lost"] == 0,
                               # RSS flat within 10% after warm-up; judged on >= 10 minutes
                               "rss_spread_target": 0.10,
                               "rss_spread_max": max(spreads) if spreads else None,
                               "rss_run_seconds": round(run_seconds, 1),
                               "rss_flat_met": bool(spreads) and max(spreads) <= 0.10
                               if run_seconds >= 600 else None}
    if validators > 1:
        lat = steady["latency"]
        targets.update({"p50_target_s": 1.5, "p99_target_s": 3.0,
                        "p50_met": lat["p50_s"] is not None and lat["p50_s"] <= 1.5,
                        "p99_met": lat["p99_s"] is not None and lat["p99_s"] <= 3.0})
    return targets


def report(r: dict[str, Any]) -> str:
    rows = []
    for s in r["stages"]:
        lat = s["latency"]
        rows.append((s["stage"], s["mode"], fmt(s["committed"]), fmt(s["seconds"], 2),
                     fmt(s["committed_tx_per_s"]), fmt(ratio(s["committed_tx_per_s"],
                                                             r["ceiling_tx_per_s"]), 3),
                     fmt(lat["p50_s"], 2), fmt(lat["p90_s"], 2), fmt(lat["p99_s"], 2),
                     fmt(s["blocks_per_s"], 2), fmt(s["lost"]), fmt(s["mempool_full_retries"])))
    out = [f"throughput, {r['validators']} validator(s); ceiling "
           f"{fmt(r['machine']['verify_per_s_one_core'])} verify/s/core x "
           f"{r['machine']['cores_usable']} cores / {r['validators']} = "
           f"{fmt(r['ceiling_tx_per_s'])} tx/s",
           table(rows, ("stage", "mode", "committed", "s", "tx/s", "ratio", "p50 s", "p90 s",
                        "p99 s", "blocks/s", "lost", "retries")), ""]
    node_rows = [(name, fmt(n["cpu_seconds"], 1), fmt(n["cpu_percent_of_one_core"]),
                  fmt(n["peak_rss_mb"]), f"{fmt(n['rss_mb_min_after_warmup'])}.."
                  f"{fmt(n['rss_mb_max_after_warmup'])}", fmt(n["rss_spread_after_warmup"], 3),
                  fmt(n["anon_rss_spread_after_warmup"], 3), fmt(n["rss_spread_last_5_min"], 3))
                 for name, n in r["nodes"].items()]
    out += [table(node_rows, ("node", "cpu s", "cpu % of 1 core", "peak RSS MB",
                              "RSS MB after warm-up", "spread", "anon spread",
                              "spread, last 5 min")), ""]
    minutes = r["latency_steady_by_minute"]
    if len(minutes) > 1:
        out += ["steady stage, minute by minute (cpu per committed tx: mean of the nodes)",
                table([(fmt(m["minute"]), fmt(m["committed"]), fmt(m["p50_s"], 2),
                        fmt(m["p99_s"], 2), fmt(m["cpu_us_per_tx"])) for m in minutes],
                      ("minute", "committed", "p50 s", "p99 s", "cpu us/tx")), ""]
    out.append(f"measured (saturation): {fmt(r['committed_tx_per_s'])} tx/s = ratio "
               f"{r['committed_tx_per_s_ratio']:.3f} of the ceiling; blocks/s "
               f"{r['blocks_per_s']}; steady at {fmt(r['steady_offered_tx_per_s'])} tx/s offered: "
               f"p50 {fmt(r['p50_s'], 2)}s p90 {fmt(r['p90_s'], 2)}s p99 {fmt(r['p99_s'], 2)}s "
               f"(ratio {r['steady_committed_tx_per_s_ratio']:.3f}); lost {r['lost']}, "
               f"committed twice {r['committed_twice']}")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
