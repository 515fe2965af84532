"""`python -m benchmarks.rpc [--validators 4] [--rate R] --out DIR`

Point-query latency under load: on a testnet carrying a steady offered load of buys,
listings and transfers (from the submitter process), a second separate process times
`account`, `order` and `tx` queries over one HTTP keep-alive connection, back to back, and
reports p50/p99 per method in ms. The default rate is the steady rate of DIR's
throughput-v{N}.json when it exists. Results: DIR/rpc.json.

The floor: the same process also times, turn about with the node's queries, a trivial
HTTP server in a process of its own that answers every POST with a fixed JSON-RPC result.
Its p99 is what the loaded machine alone costs a request (scheduling delays on busy
cores), in the same run: no node can answer faster than that.
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import json
import multiprocessing
import random
import sys
import time
from typing import Any

from .common import fmt, measure_ceiling, percentile, ratio, table, write_json
from .throughput import Bench, add_common_args

METHODS = ("account", "order", "tx")


FLOOR = "floor"
FLOOR_REPLY = b'{"jsonrpc":"2.0","id":1,"result":{"balance":0,"nonce":0}}'


class _FloorHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the node's server
    disable_nagle_algorithm = True  # headers and body go out in two writes

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(FLOOR_REPLY)))
        self.end_headers()
        self.wfile.write(FLOOR_REPLY)

    def log_message(self, *_: Any) -> None:
        pass


def floor_server(port_out: Any) -> None:
    """Runs in its own process: the trivial server of the floor measurement."""
    server = http.server.HTTPServer(("127.0.0.1", 0), _FloorHandler)
    port_out.put(server.server_address[1])
    server.serve_forever()


def query_worker(port: int, floor_port: int, targets: dict[str, list[Any]], seconds: float,
                 out: Any) -> None:
    """Runs in its own process: back-to-back point queries, each followed by one to the
    floor server; sends {method: [ms, ...], "floor": [ms, ...]}."""
    rng = random.Random(3)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    floor = http.client.HTTPConnection("127.0.0.1", floor_port, timeout=10)
    times: dict[str, list[float]] = {m: [] for m in (*METHODS, FLOOR)}
    errors = 0
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        method = METHODS[n % len(METHODS)]
        n += 1
        value = rng.choice(targets[method])
        params = {"address": value} if method == "account" else (
            {"id": value} if method == "order" else {"hash": value})
        body = json.dumps({"jsonrpc": "2.0", "id": n, "method": method, "params": params})
        t = time.perf_counter()
        conn.request("POST", "/", body, {"Content-Type": "application/json"})
        reply = json.loads(conn.getresponse().read())
        times[method].append((time.perf_counter() - t) * 1000)
        if "error" in reply:
            errors += 1
        t = time.perf_counter()
        floor.request("POST", "/", body, {"Content-Type": "application/json"})
        json.loads(floor.getresponse().read())
        times[FLOOR].append((time.perf_counter() - t) * 1000)
    out.put({"times": times, "errors": errors})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rpc",
                                     description=__doc__.split("\n\n")[1])
    parser.add_argument("--validators", type=int, default=4)
    parser.add_argument("--rate", type=float, default=None, help="offered load, tx/s")
    parser.add_argument("--seconds", type=float, default=60.0, help="duration of the load")
    parser.add_argument("--accounts", type=int, default=4_000)
    add_common_args(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.accounts = min(args.seconds, 10.0), 400
    if args.rate is None:
        previous = args.out / f"throughput-v{args.validators}.json"
        args.rate = (json.loads(previous.read_text())["steady_offered_tx_per_s"]
                     if previous.exists() else 200.0)

    def log(line: str) -> None:
        print(line, flush=True)

    ceiling = measure_ceiling(args.quick)
    ceiling_tx = ceiling["cores_usable"] * ceiling["verify_per_s_one_core"] / args.validators
    bench = Bench(args.out / "rpc", args.validators, args.accounts, 20)
    try:
        bench.start()
        bench.setup(args.batch)
        items = bench.wl.stage_buy(min(4_000, args.accounts))
        _, result = bench.stage("orders", items, batch=args.batch, keep=True)
        bench.wl.assign_ids(items, [result["block_hashes"][h] for h in sorted(
            result["block_hashes"])], bench.next_listing, bench.next_order)
        targets = {"account": [a.text for a in bench.wl.accounts],
                   "order": [o.order_id for o in bench.wl.orders if o.order_id],
                   "tx": [h for h in result["commit"]]}
        load = bench.wl.stage_steady(int(args.rate * args.seconds))
        log(f"load: {len(load)} txs at {args.rate:.0f} tx/s; querying node0 meanwhile ...")
        ctx = multiprocessing.get_context("spawn")
        queue, floor_port = ctx.Queue(), ctx.Queue()
        floor = ctx.Process(target=floor_server, args=(floor_port,), daemon=True)
        floor.start()
        worker = ctx.Process(target=query_worker, args=(
            bench.manifest.nodes[0].rpc_port, floor_port.get(timeout=30), targets,
            args.seconds * 0.9, queue))
        worker.start()
        steady, _ = bench.stage("steady", load, mode="rate", rate=args.rate,
                                batch=max(10, int(args.rate / 10)))
        answer = queue.get(timeout=args.seconds + 60)
        worker.join()
        floor.terminate()
    finally:
        bench.stop()
    per_method = {}
    all_ms: list[float] = []
    floor_ms = answer["times"].pop(FLOOR)
    for method, values in answer["times"].items():
        all_ms += values
        per_method[method] = {"count": len(values), "p50_ms": _r(percentile(values, 50)),
                              "p99_ms": _r(percentile(values, 99)), "max_ms": _r(max(values))}
    p99 = percentile(all_ms, 99)
    result = {
        "benchmark": "rpc", "quick": args.quick, "validators": args.validators,
        "command": " ".join(["python -m benchmarks.rpc", *(argv or sys.argv[1:])]),
        "machine": ceiling, "ceiling_tx_per_s": ceiling_tx,
        "load_offered_tx_per_s": args.rate,
        "load_committed_tx_per_s": steady["committed_tx_per_s"],
        "load_committed_tx_per_s_ratio": ratio(steady["committed_tx_per_s"], ceiling_tx),
        "load_lost": steady["lost"],
        "queries": len(all_ms), "query_errors": answer["errors"],
        "p50_ms": _r(percentile(all_ms, 50)), "p99_ms": _r(p99), "methods": per_method,
        "floor": {"queries": len(floor_ms), "p50_ms": _r(percentile(floor_ms, 50)),
                  "p99_ms": _r(percentile(floor_ms, 99)), "max_ms": _r(max(floor_ms))},
        "targets": {"p99_target_ms": 5.0, "p99_met": p99 is not None and p99 <= 5.0},
        "nodes": steady["nodes"],
    }
    path = write_json(args.out, "rpc.json", result)
    rows = [(m, fmt(v["count"]), fmt(v["p50_ms"], 2), fmt(v["p99_ms"], 2), fmt(v["max_ms"], 2))
            for m, v in per_method.items()]
    rows.append(("all", fmt(len(all_ms)), fmt(result["p50_ms"], 2), fmt(result["p99_ms"], 2),
                 "-"))
    f = result["floor"]
    rows.append(("floor (trivial server)", fmt(f["queries"]), fmt(f["p50_ms"], 2),
                 fmt(f["p99_ms"], 2), fmt(f["max_ms"], 2)))
    print(f"rpc point queries under {args.rate:.0f} tx/s offered "
          f"({steady['committed_tx_per_s']:.0f} committed, ratio "
          f"{result['load_committed_tx_per_s_ratio']:.3f}), {args.validators} validators")
    print(table(rows, ("method", "queries", "p50 ms", "p99 ms", "max ms")))
    print(f"results: {path}")
    return 0


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


if __name__ == "__main__":
    sys.exit(main())
