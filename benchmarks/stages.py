"""Running one pre-signed stage through the submitter process and summarising it."""

from __future__ import annotations

import pickle
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from node.testnet import TestnetManifest

from .common import ProcessMeter, latency_summary, percentile
from .workload import Item, Workload

REPO = Path(__file__).resolve().parent.parent


def lanes_for(nodes: int) -> int:
    """Connections per node, each with one batch in flight. A lone validator with two sat
    idle a fifth of the time at saturation (py-spy) while answers travelled back and the
    next batches were built; four keep it busy. With four validators sharing two cores,
    four lanes per node made no difference against two."""
    return max(2, 4 // nodes)


def route(items: list[Item], nodes: int, batch: int, lanes: int | None = None
          ) -> list[list[list[tuple[str, str]]]]:
    """Each sender's txs go to one node (sender index mod nodes) over one of its lanes
    (connections), in nonce order, so the node never sees a gap; per lane they are cut into
    batches. Stream `node * lanes + lane`. Several lanes keep a node busy while another
    lane's answer travels back and its next batch is built."""
    lanes = lanes_for(nodes) if lanes is None else lanes
    streams: list[list[tuple[str, str]]] = [[] for _ in range(nodes * lanes)]
    for it in items:
        streams[it.sender % nodes * lanes + it.sender // nodes % lanes].append((it.hash, it.raw))
    return [[lst[i:i + batch] for i in range(0, len(lst), batch)] for lst in streams]


def run_stage(manifest: TestnetManifest, items: list[Item], meter: ProcessMeter, *,
              submit_to: list[int], mode: str = "saturation", rate: float | None = None,
              batch: int = 250, drain_timeout: float = 60.0,
              keep_block_hashes: bool = False) -> dict[str, Any]:
    """Submit `items` from a separate process; returns its raw result plus node stats."""
    urls = [manifest.nodes[i].rpc_url for i in submit_to
            for _lane in range(lanes_for(len(submit_to)))]
    spec = {"urls": urls, "watch_url": manifest.nodes[submit_to[0]].rpc_url,
            "batches": route(items, len(submit_to), batch), "rate": rate if mode == "rate" else None,
            "drain_timeout": drain_timeout, "keep_block_hashes": keep_block_hashes}
    with tempfile.TemporaryDirectory(prefix="cm-bench-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.pkl", Path(tmp) / "result.pkl"
        spec_path.write_bytes(pickle.dumps(spec))
        meter.begin()
        started, children = time.monotonic(), _children_cpu()
        proc = subprocess.Popen([sys.executable, "-m", "benchmarks.submitter", str(spec_path),
                                 str(out_path)], cwd=str(REPO))
        while proc.poll() is None:
            meter.sample()
            time.sleep(0.5)
        nodes = meter.end()
        cpu, seconds = _children_cpu() - children, time.monotonic() - started
        if proc.returncode != 0:
            raise RuntimeError(f"the submitter process failed (exit {proc.returncode})")
        result = pickle.loads(out_path.read_bytes())
    result["nodes"] = nodes
    # the load generator shares the cores with the nodes it measures: its share is reported
    result["submitter"] = {"cpu_seconds": round(cpu, 2),
                           "cpu_percent_of_one_core": round(100 * cpu / seconds, 1)}
    result["by_minute"] = by_minute(result, meter)
    return result


def _children_cpu() -> float:
    """CPU seconds of this process's waited-for children (the nodes are still running, so
    between two calls around one submitter this is the submitter's)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def by_minute(result: dict[str, Any], meter: ProcessMeter) -> list[dict[str, Any]]:
    """The stage minute by minute: the txs committed in each minute, their latency, and the
    nodes' CPU per committed tx. Over a long run this shows whether the work per tx grows
    with the chain, or whether a node falls behind an offered rate it once kept up with."""
    t0, submit = result.get("t0_monotonic"), result["submit_time"]
    if t0 is None:
        return []
    latencies: dict[int, list[float]] = {}
    for tx_hash, (seen, _height) in result["commit"].items():
        if tx_hash in submit:
            latencies.setdefault(int(seen // 60), []).append(seen - submit[tx_hash])
    rows = []
    for minute in sorted(latencies):
        lat = latencies[minute]
        start = t0 + 60 * minute
        cpus = [c for c in (meter.cpu_between(name, start, start + 60) for name in meter.pids)
                if c is not None]
        rows.append({"minute": minute, "committed": len(lat),
                     "p50_s": round(percentile(lat, 50), 3),  # type: ignore[arg-type]
                     "p99_s": round(percentile(lat, 99), 3),  # type: ignore[arg-type]
                     "cpu_us_per_tx": round(1e6 * sum(cpus) / len(cpus) / len(lat))
                     if cpus else None})
    return rows


def summarize(name: str, items: list[Item], result: dict[str, Any], mode: str,
              rate: float | None = None) -> dict[str, Any]:
    accepted = set(result["accepted"])
    commit = result["commit"]
    committed = [h for h in accepted if h in commit]
    submit = result["submit_time"]
    latencies = [commit[h][0] - submit[h] for h in committed]
    duration = max((commit[h][0] for h in committed), default=result["end"])
    blocks = [b for b in result["blocks"] if b[1] <= duration]
    ours = set(committed)
    kinds = Counter(it.kind for it in items if it.hash in ours)
    return {
        "stage": name, "mode": mode, "offered_tx_per_s": None if rate is None else round(rate, 1),
        "txs": len(items), "accepted": len(accepted), "rejected": len(result["rejected"]),
        "rejected_examples": list(result["rejected"].values())[:3],
        "rejected_kinds": dict(Counter(it.kind for it in items if it.hash in result["rejected"])),
        "committed": len(committed), "lost": len(accepted) - len(committed),
        "lost_examples": [[k.kind, k.hash] for k in items
                          if k.hash in accepted and k.hash not in commit][:5],
        "committed_twice": len(result["duplicates"]), "mempool_full_retries": result["retries"],
        "parked_at_submit": result["parked"],
        "seconds": round(duration, 3), "submit_seconds": round(result["submit_end"], 3),
        "committed_tx_per_s": round(len(committed) / duration, 1) if duration > 0 else 0.0,
        "blocks": len(blocks), "blocks_per_s": round(len(blocks) / duration, 2) if duration else 0,
        "txs_per_block_max": max((b[2] for b in blocks), default=0),
        "latency": latency_summary(latencies), "tx_kinds": dict(sorted(kinds.items())),
        "nodes": result["nodes"], "submitter": result.get("submitter"),
        "by_minute": result.get("by_minute", []),
    }


def block_order(result: dict[str, Any]) -> list[list[str]]:
    return [result["block_hashes"][h] for h in sorted(result["block_hashes"])]


def check_ids(client: Any, wl: Workload, orders_from: int = 0, sample: int = 20) -> None:
    """The derived ids agree with the node (a sample of listings and orders)."""
    step = max(1, len(wl.listings) // sample)
    for listing_id, merchant in wl.listings[::step]:
        got = client.call("listing", id=listing_id)["merchant"]
        if got != wl.accounts[merchant].text:
            raise RuntimeError(f"listing {listing_id}: derived merchant differs from the node")
    orders = wl.orders[orders_from:]
    step = max(1, len(orders) // sample)
    for order in orders[::step] + orders[-1:]:
        got = client.call("order", id=order.order_id)["buyer"]
        if got != wl.accounts[order.buyer].text:
            raise RuntimeError(f"order {order.order_id}: derived buyer differs from the node")
