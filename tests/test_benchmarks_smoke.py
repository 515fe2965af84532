"""Smoke test of the benchmark harness: the quick 1-validator throughput run end to end.

Runs `python -m benchmarks.throughput --validators 1 --quick` as a subprocess (it starts a
real node) and checks that its JSON has every field the issue asks for. Timings are never
asserted: only presence, types, internal consistency and that no tx was lost. The
in-process benchmark runs once on a small mixed workload.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _ratio_fields(value, path=""):
    if isinstance(value, dict):
        for key, sub in value.items():
            if "ratio" in key and not isinstance(sub, dict):
                yield f"{path}{key}", sub
            yield from _ratio_fields(sub, f"{path}{key}.")


@pytest.fixture(scope="module")
def quick_result(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.throughput", "--validators", "1", "--quick",
         "--steady-seconds", "4", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "tx/s" in proc.stdout and "ratio" in proc.stdout  # the printed table
    return json.loads((out / "throughput-v1.json").read_text())


def test_quick_throughput_json_has_every_required_field(quick_result):
    r = quick_result
    assert r["validators"] == 1
    assert r["committed_tx_per_s"] > 0
    machine = r["machine"]
    assert machine["verify_per_s_one_core"] > 0 and machine["cores_usable"] >= 1
    expected_ceiling = machine["cores_usable"] * machine["verify_per_s_one_core"] / 1
    assert r["ceiling_tx_per_s"] == pytest.approx(expected_ceiling, rel=1e-3)
    assert r["committed_tx_per_s_ratio"] == pytest.approx(
        r["committed_tx_per_s"] / r["ceiling_tx_per_s"], rel=1e-2)
    ratios = dict(_ratio_fields(r))
    assert "committed_tx_per_s_ratio" in ratios
    assert all(isinstance(v, float) and v >= 0 for v in ratios.values()), ratios
    for key in ("p50_s", "p90_s", "p99_s"):
        assert isinstance(r[key], float) and r[key] >= 0
    assert r["p50_s"] <= r["p90_s"] <= r["p99_s"]
    assert r["latency_saturation"]["p99_s"] is not None
    assert r["blocks_per_s"] > 0


def test_quick_throughput_loses_nothing_and_commits_nothing_twice(quick_result):
    r = quick_result
    assert r["lost"] == 0
    assert r["committed_twice"] == 0
    assert r["rejected"] == 0
    for stage in r["stages"]:
        assert stage["committed"] == stage["accepted"] == stage["txs"], stage["stage"]
        assert stage["parked_at_submit"] == 0, stage["stage"]  # each lane sends in nonce order


def test_quick_throughput_covers_every_commerce_tx_type(quick_result):
    kinds = set()
    for stage in quick_result["stages"]:
        kinds |= set(stage["tx_kinds"])
    assert {"list", "buy", "ship", "confirm", "review", "reward", "transfer"} <= kinds


def test_quick_throughput_reports_cpu_and_rss_per_node(quick_result):
    nodes = quick_result["nodes"]
    assert set(nodes) == {"node0"}
    for stats in nodes.values():
        assert stats["cpu_seconds"] > 0
        assert stats["cpu_percent_of_one_core"] > 0
        assert stats["peak_rss_mb"] > 0
        low, high = stats["rss_mb_min_after_warmup"], stats["rss_mb_max_after_warmup"]
        assert 0 < low <= high
        assert stats["rss_spread_after_warmup"] == pytest.approx((high - low) / low, abs=5e-3)
        assert stats["rss_mb_by_minute"] and max(stats["rss_mb_by_minute"]) >= high
        # anonymous memory is part of RSS, minute by minute
        anon = stats["anon_rss_mb_by_minute"]
        assert len(anon) == len(stats["rss_mb_by_minute"])
        assert all(0 < a <= r for a, r in zip(anon, stats["rss_mb_by_minute"], strict=True))
        assert stats["anon_rss_spread_after_warmup"] >= 0
    targets = quick_result["targets"]
    assert targets["rss_spread_max"] == max(n["rss_spread_after_warmup"] for n in nodes.values())
    # a quick run is far shorter than the 10 minutes the flatness target is judged on
    assert targets["rss_run_seconds"] < 600 and targets["rss_flat_met"] is None


def test_quick_throughput_reports_the_submitters_cpu_per_stage(quick_result):
    for stage in quick_result["stages"]:
        submitter = stage["submitter"]
        # a Python process that sent and watched every tx of the stage used some CPU
        assert submitter["cpu_seconds"] > 0, stage["stage"]
        assert submitter["cpu_percent_of_one_core"] > 0, stage["stage"]


def test_submitter_sorts_each_reply_of_a_batch_by_its_id():
    from benchmarks.submitter import MEMPOOL_FULL, TX_ALREADY_KNOWN, Run

    run = Run({})
    pending = [("h0", "r0"), ("h1", "r1"), ("h2", "r2"), ("h3", "r3"), ("h4", "r4")]
    replies = [  # out of order, and no reply for id 4
        {"id": 3, "error": {"code": -32000, "message": "bad nonce"}},
        {"id": 0, "result": {"status": "pooled"}},
        {"id": 2, "error": {"code": MEMPOOL_FULL, "message": "full"}},
        {"id": 1, "error": {"code": TX_ALREADY_KNOWN, "message": "known"}},
    ]
    assert run.sort_replies(pending, replies) == [("h2", "r2")]
    assert run.accepted == {"h0", "h1"}
    assert run.rejected["h3"] == [-32000, "bad nonce"]
    code, message = run.rejected["h4"]
    assert code is None and "bad nonce" in message  # what came back instead, for the log
    run.sort_replies([("h5", "r5")], [{"id": 0, "result": {"status": "parked"}}])
    assert run.parked == 1 and "h5" in run.accepted
    run.sort_replies([("h6", "r6")], {"error": {"code": -32600, "message": "not a batch"}})
    assert run.rejected["h6"][0] is None and "not a batch" in run.rejected["h6"][1]


def test_inprocess_mixed_run_commits_everything_and_reuses_the_check_runs():
    """`benchmarks.inprocess --mixed` end to end on a small chain: every buy and transfer
    commits, and the blocks applied the mempool's check runs instead of running them again
    (all of them: one validator, blocks built in its pool's order)."""
    import asyncio

    from benchmarks.inprocess import run

    result = asyncio.run(run(60, 4, deep=True, mixed=True))
    assert result["txs"] == (60 - 20) * 4 and result["mixed"] is True
    assert result["blocks"] >= 1 and result["cpu_seconds"] > 0
    assert result["reused_runs"] >= result["txs"]


def test_quick_throughput_breaks_the_steady_stage_down_by_minute(quick_result):
    steady = next(s for s in quick_result["stages"] if s["stage"] == "steady")
    minutes = quick_result["latency_steady_by_minute"]
    assert minutes == steady["by_minute"] and minutes[0]["minute"] == 0
    assert sum(m["committed"] for m in minutes) == steady["committed"]
    assert minutes[0]["cpu_us_per_tx"] > 0


def test_by_minute_splits_commits_and_cpu_by_the_minute_they_fell_in():
    from benchmarks.common import ProcessMeter
    from benchmarks.stages import by_minute

    meter = ProcessMeter({"node0": 1, "node1": 2})
    t0 = 1000.0
    # node0 uses 6 s of CPU a minute, node1 12 s: 9 s a minute on average
    for name, per_minute in (("node0", 6.0), ("node1", 12.0)):
        meter.cpu_times[name] = [t0 + 30 * i for i in range(5)]  # 0, 30, ..., 120 s
        meter.cpu_samples[name] = [per_minute * i / 2 for i in range(5)]
    result = {"t0_monotonic": t0,
              "submit_time": {"a": 0.0, "b": 11.0, "c": 70.0},
              "commit": {"a": (1.0, 5), "b": (12.0, 6), "c": (75.0, 9),
                         "not-ours": (80.0, 9)}}
    rows = by_minute(result, meter)
    assert [r["minute"] for r in rows] == [0, 1]
    assert [r["committed"] for r in rows] == [2, 1]
    assert rows[0]["p50_s"] == rows[0]["p99_s"] == 1.0 and rows[1]["p50_s"] == 5.0
    assert rows[0]["cpu_us_per_tx"] == 9_000_000 // 2 and rows[1]["cpu_us_per_tx"] == 9_000_000


def test_rss_spread_of_the_last_five_minutes_needs_a_run_twice_as_long():
    from benchmarks.common import ProcessMeter
    from benchmarks.throughput import _spread_last

    meter = ProcessMeter({"node0": 1})
    # one sample a minute for 11 minutes: growing to 200 MB by minute 6, then 200..210 MB
    rss = [100, 120, 140, 160, 180, 190, 200, 205, 210, 200, 204, 206]
    meter.rss_samples["node0"] = [mb * 1024 for mb in rss]
    meter.rss_times["node0"] = [60.0 * m for m in range(len(rss))]
    assert _spread_last(meter, "node0", 300.0) == round((210 - 200) / 200, 3)
    meter.rss_samples["node0"], meter.rss_times["node0"] = meter.rss_samples["node0"][:9], \
        meter.rss_times["node0"][:9]  # 8 minutes: too short to judge the last five
    assert _spread_last(meter, "node0", 300.0) is None
