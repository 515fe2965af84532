"""`python -m tests.e2e.runner --scenario NAME`: run one fault scenario and write its report.

A scenario (tests/e2e/scenarios/NAME.toml, or a path) names the validators, full nodes,
load and a schedule of perturbations. The runner:

1. builds the testnet with `chainmerce testnet` on a free port range, enables the admin RPC
   methods (for disconnects) and the byzantine mode the scenario asks for;
2. starts every node (`chainmerce start`, one process each) and waits for blocks;
3. starts the commerce load in a separate process (`python -m tests.e2e.load`);
4. applies the perturbations at their times, recording heights before, during and after;
5. heals everything, waits until the mempools are empty and every node is at one height;
6. checks agreement, txs, nonces, double signing and evidence (tests/e2e/checks.py);
7. writes the JSON report to test-artifacts/e2e/NAME.json (or --report-dir).

Perturbations (`kind`): "kill" (kill -9, restart after duration_s), "restart" (SIGTERM,
start again), "pause" (SIGSTOP for duration_s, then SIGCONT), "disconnect"
(admin_disconnect_peers for duration_s), "wipe" (kill -9, delete the chain database and
consensus WAL, keep the signing state, restart: it must block-sync back), "add_validator"
(validator_vote from +2/3 of the validators adding `node` with `power`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from commerce_vm import sign_tx
from commerce_vm import txtypes as T
from core.address import address_from_pubkey, address_to_text
from core.keys import PrivateKey
from node.client import Client, ClientError
from node.testnet import ephemeral_port_floor, load_manifest
from tests.e2e import checks
from tests.e2e_helpers import REPO, NodeHome, run_cli, set_config
from tests.network_helpers import LocalTestnet, wait_until

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
ARTIFACTS = REPO / "test-artifacts" / "e2e"
KINDS = ("kill", "restart", "pause", "disconnect", "wipe", "add_validator")
RECOVERY_TIMEOUT = 60.0
SETTLE_TIMEOUT = 120.0


@dataclass(frozen=True)
class Perturbation:
    at_s: float
    kind: str
    node: int
    duration_s: float = 0.0
    power: int = 10
    once: bool = False


@dataclass
class Scenario:
    name: str
    validators: int
    full_nodes: int
    duration_s: float
    workers: int = 6
    chain_id: str = "chainmerce-e2e"
    consensus: dict[str, int] = field(default_factory=dict)
    perturbations: list[Perturbation] = field(default_factory=list)
    byzantine: tuple[int, str] | None = None
    cycle_s: float | None = None

    @classmethod
    def load(cls, name_or_path: str) -> Scenario:
        path = Path(name_or_path)
        if not path.suffix:
            path = SCENARIOS / f"{name_or_path}.toml"
        data = tomllib.loads(path.read_text())
        items = [Perturbation(**p) for p in data.get("perturbation", [])]
        nodes = data["validators"] + data.get("full_nodes", 0)
        for p in items:
            if p.kind not in KINDS or not 0 <= p.node < nodes:
                raise ValueError(f"{path}: bad perturbation {p}")
        byz = data.get("byzantine")
        return cls(data["name"], data["validators"], data.get("full_nodes", 0),
                   float(data["duration_s"]), data.get("workers", 6),
                   data.get("chain_id", "chainmerce-e2e"), data.get("consensus", {}), items,
                   (byz["node"], byz["mode"]) if byz else None, data.get("cycle_s"))

    def schedule(self) -> list[Perturbation]:
        """The perturbations in time order; with cycle_s, repeated until duration_s."""
        if not self.cycle_s:
            return sorted(self.perturbations, key=lambda p: p.at_s)
        out, start = [], 0.0
        while start < self.duration_s:
            for p in self.perturbations:
                if (start == 0 or not p.once) and start + p.at_s + p.duration_s < self.duration_s:
                    out.append(Perturbation(start + p.at_s, p.kind, p.node, p.duration_s,
                                            p.power, p.once))
            start += self.cycle_s
        return sorted(out, key=lambda p: p.at_s)


def free_port_range(count: int, start: int = 10000) -> int:
    """A base port with `count` consecutive free loopback ports (random start per pid),
    below the kernel's ephemeral range: after a kill, another process's outgoing connection
    could otherwise take a node's port before the node restarts."""
    span = max(ephemeral_port_floor() - count - start, 1)
    base = start + (os.getpid() * 97) % span
    for _ in range(span):
        ok = True
        for port in range(base, base + count):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
        base = start + (base + count + 7 - start) % span
    raise RuntimeError("no free loopback port range below the ephemeral ports")


class Run:
    def __init__(self, scenario: Scenario, workdir: Path, report_dir: Path = ARTIFACTS):
        self.scenario = scenario
        self.workdir = workdir
        self.report_dir = report_dir
        self.root = workdir / "testnet"
        self.net: LocalTestnet | None = None
        self.load_proc: subprocess.Popen | None = None
        self.records: list[dict[str, Any]] = []
        self.failures: list[str] = []
        self.expected_misbehaving: set[str] = set()
        self.added: dict[str, Any] | None = None
        self.paused: set[int] = set()

    # --- setup ----------------------------------------------------------------------------

    def build(self) -> None:
        sc = self.scenario
        count = sc.validators + sc.full_nodes
        base = free_port_range(2 * count)
        run_cli("testnet", "--validators", str(sc.validators), "--full-nodes",
                str(sc.full_nodes), "--out", str(self.root), "--base-port", str(base),
                "--chain-id", sc.chain_id)
        manifest = load_manifest(self.root)
        nodes = [NodeHome(manifest.home(n), n.rpc_port, manifest.chain_id,
                          dict(manifest.dev_accounts)) for n in manifest.nodes]
        for home in nodes:
            set_config(home.config_file, "rpc", {"admin_methods": True})
            if sc.consensus:
                set_config(home.config_file, "consensus", sc.consensus)
        if sc.byzantine is not None:
            index, mode = sc.byzantine
            set_config(nodes[index].config_file, "consensus", {"byzantine": mode})
            self.expected_misbehaving.add(manifest.nodes[index].validator_address)
        self.net = LocalTestnet(self.root, manifest, nodes)

    def validator_key(self, i: int) -> PrivateKey:
        doc = json.loads((self.net.nodes[i].path / "config" / "validator_key.json").read_text())
        return PrivateKey(bytes.fromhex(doc["seed"]))

    def start(self) -> None:
        self.net.start(min_height=1, timeout=60.0)
        self.net.wait_connected(timeout=60.0)
        if any(p.kind == "add_validator" for p in self.scenario.perturbations):
            self.fund_validators()

    def fund_validators(self) -> None:
        """Validators vote with their validator keys as accounts: give them fee money."""
        net = self.net
        for i in range(self.scenario.validators):
            address = address_from_pubkey(self.validator_key(i).public_key)
            raw = sign_tx(net.key("arbiter"), net.manifest.chain_id, T.TRANSFER,
                          net.next_nonce("arbiter"), 10, [address, 100_000])
            answer = net.submit_commit(0, raw)
            if answer["code"] != 0:
                raise AssertionError(f"funding validator {i} failed: {answer}")

    # --- observation ----------------------------------------------------------------------

    def height_of(self, i: int) -> int | None:
        if i in self.paused:
            return None
        try:
            return int(self.net.client(i, timeout=2.0).call("status")["sync_info"][
                "latest_block_height"])
        except (ClientError, KeyError):
            return None

    def max_height(self, exclude: int | None = None) -> int:
        heights = [self.height_of(i) for i in range(len(self.net.nodes)) if i != exclude]
        return max((h for h in heights if h is not None), default=0)

    def honest_client(self, exclude: int | None = None) -> Client:
        for i in range(len(self.net.nodes)):
            if i != exclude and i not in self.paused and self.height_of(i) is not None:
                return self.net.client(i, timeout=10.0)
        raise AssertionError("no node answers RPC")

    def power_up_ok(self, i: int) -> bool:
        """Whether more than 2/3 of the voting power stays up while node i is down."""
        current = self.honest_client(exclude=i).call("validators")
        pubkey = self.validator_key(i).public_key.hex()
        down = sum(v["power"] for v in current["validators"] if v["pub_key"] == pubkey)
        total = current["total_power"]
        return 3 * (total - down) > 2 * total

    # --- perturbations --------------------------------------------------------------------

    def apply(self, p: Perturbation) -> None:
        net = self.net
        record: dict[str, Any] = {"kind": p.kind, "node": f"node{p.node}", "at_s": p.at_s,
                                  "duration_s": p.duration_s}
        if p.kind == "add_validator":
            record.update(self.add_validator(p.node, p.power))
            self.records.append(record)
            return
        record["power_up_ok"] = self.power_up_ok(p.node)
        record["height_before"] = self.max_height()
        home = net.nodes[p.node]
        if p.kind == "kill":
            net.kill(p.node)
            time.sleep(p.duration_s)
        elif p.kind == "restart":
            record["exit_code"] = net.stop(p.node)
            time.sleep(p.duration_s)
        elif p.kind == "wipe":
            net.kill(p.node)
            data = home.path / "data"
            shutil.rmtree(data / "chain.db", ignore_errors=True)
            (data / "consensus.wal").unlink(missing_ok=True)
            time.sleep(p.duration_s)
        elif p.kind == "pause":
            os.kill(home.proc.pid, signal.SIGSTOP)
            self.paused.add(p.node)
            time.sleep(p.duration_s)
        elif p.kind == "disconnect":
            net.call(p.node, "admin_disconnect_peers", seconds=max(1, int(p.duration_s)))
            time.sleep(p.duration_s)
        record["height_during"] = self.max_height(exclude=p.node)
        if p.kind in ("kill", "restart", "wipe"):
            home.start(wait=False)
        elif p.kind == "pause":
            os.kill(home.proc.pid, signal.SIGCONT)
            self.paused.discard(p.node)
        record["progressed_during"] = record["height_during"] > record["height_before"]
        ended = time.monotonic()
        target = record["height_during"]
        try:
            wait_until(lambda: (self.height_of(p.node) or 0) >= target, RECOVERY_TIMEOUT,
                       f"node{p.node} back to height {target}", interval=0.25)
            record["caught_up_s"] = round(time.monotonic() - ended, 1)
        except AssertionError:
            record["caught_up_s"] = None
        try:
            record["height_after"] = wait_until(
                lambda: max(self.max_height(), 0) > target and self.max_height(),
                RECOVERY_TIMEOUT, f"progress after {p.kind} of node{p.node}", interval=0.25)
        except AssertionError:
            record["height_after"] = self.max_height()
        record["progressed_after"] = record["height_after"] > record["height_during"]
        if p.kind == "wipe":
            record["synced_blocks"] = net.call(p.node, "status")["sync_info"]["synced_blocks"]
        if record["power_up_ok"] and not record["progressed_during"]:
            self.failures.append(f"no progress during {p.kind} of node{p.node}")
        if not record["progressed_after"]:
            self.failures.append(f"no progress after {p.kind} of node{p.node}")
        if record["caught_up_s"] is None:
            self.failures.append(f"node{p.node} did not catch up after {p.kind}")
        self.records.append(record)

    def add_validator(self, target: int, power: int) -> dict[str, Any]:
        net = self.net
        chain_id = net.manifest.chain_id
        pubkey = self.validator_key(target).public_key
        current = self.honest_client().call("validators")
        total = current["total_power"]
        voters, tally, results = [], 0, []
        for i in range(self.scenario.validators):
            if 3 * tally > 2 * total:
                break
            key = self.validator_key(i)
            if not any(v["pub_key"] == key.public_key.hex() for v in current["validators"]):
                continue
            address = address_to_text(address_from_pubkey(key.public_key))
            nonce = self.honest_client().call("account", address=address)["next_nonce"]
            raw = sign_tx(key, chain_id, T.VALIDATOR_VOTE, nonce, 10,
                          [T.VOTE_ADD, pubkey, power])
            answer = self.honest_client().call("broadcast_tx_commit", tx=raw.hex())
            results.append(answer)
            if answer["code"] != 0:
                self.failures.append(f"validator_vote by node{i} failed: {answer['name']}")
                return {"voters": voters, "passed": False}
            voters.append(f"node{i}")
            tally += next(v["power"] for v in current["validators"]
                          if v["pub_key"] == key.public_key.hex())
        passed_at = results[-1]["height"]
        effective = passed_at + 2
        try:
            wait_until(lambda: any(v["pub_key"] == pubkey.hex() for v in self.honest_client()
                                   .call("validators", height=effective)["validators"]),
                       30.0, "the new validator in the set", interval=0.5)
            in_set = True
        except AssertionError:
            in_set = False
            self.failures.append(f"node{target} not in the validator set at {effective}")
        self.added = {"node": target, "address": address_to_text(address_from_pubkey(pubkey)),
                      "effective_height": effective}
        return {"voters": voters, "passed_at": passed_at, "effective_height": effective,
                "in_set": in_set}

    # --- the run ----------------------------------------------------------------------------

    def start_load(self, acks: Path) -> None:
        self.load_proc = subprocess.Popen(
            [sys.executable, "-m", "tests.e2e.load", "--testnet", str(self.root),
             "--duration", str(self.scenario.duration_s), "--workers",
             str(self.scenario.workers), "--out", str(acks)],
            cwd=REPO, stdout=(self.workdir / "load.log").open("w"),
            stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def heal(self) -> None:
        for i, home in enumerate(self.net.nodes):
            if i in self.paused:
                os.kill(home.proc.pid, signal.SIGCONT)
                self.paused.discard(i)
            if home.proc is None or home.proc.poll() is not None:
                self.failures.append(f"node{i} was not running at the end")
                home.start(wait=False)
            try:
                self.net.call(i, "admin_reconnect_peers")
            except ClientError:
                pass

    def settle(self) -> int:
        """Wait for empty mempools and every node at one height; that height."""
        net = self.net
        deadline = time.monotonic() + SETTLE_TIMEOUT

        def mempools_empty() -> bool:
            return all(net.call(i, "num_unconfirmed_txs")["n_txs"] == 0
                       for i in range(len(net.nodes)))

        wait_until(mempools_empty, SETTLE_TIMEOUT, "empty mempools", interval=0.5)
        target = max(net.heights().values()) + 1
        net.wait_height(target, timeout=max(10.0, deadline - time.monotonic()))
        return target

    def check(self, top: int, acks: Path) -> dict[str, Any]:
        net = self.net
        urls = {f"node{i}": net.nodes[i].url for i in range(len(net.nodes))}
        chains = {name: checks.fetch_chain(url, top) for name, url in urls.items()}
        reference = chains["node0"]
        validators = checks.fetch_validators(urls["node0"], top)
        senders = sorted({tx["sender"] for h in reference for tx in reference[h]["block"]["txs"]})
        next_nonces = {s: net.call(0, "account", address=s)["next_nonce"] for s in senders}
        txs = checks.check_txs(reference, acks, next_nonces)
        forks = checks.check_agreement(chains, top)
        double = checks.check_double_signing(chains, validators)
        in_blocks = checks.evidence_in_blocks(reference, validators)
        in_logs = checks.evidence_in_logs({n: net.nodes[i].log_path
                                           for i, n in enumerate(urls)}, validators)
        honest_accused = sorted({e["validator"] for e in in_blocks + in_logs
                                 if e["validator"] not in self.expected_misbehaving})
        result = {"forks": len(forks), "fork_details": forks[:10], "double_signs": len(double),
                  "double_sign_details": double[:10], "evidence_in_blocks": in_blocks[:20],
                  "evidence_in_logs": len(in_logs), "honest_validators_accused": honest_accused,
                  **txs}
        for what, bad in (("forks", forks), ("double-signed precommits", double),
                          ("honest validators in evidence", honest_accused),
                          ("lost txs", txs["lost_txs"]), ("txs twice in the chain",
                                                          txs["duplicate_txs"]),
                          ("nonce errors", txs["nonce_errors"])):
            if bad:
                self.failures.append(f"{what}: {str(bad)[:300]}")
        if txs["wrong_height"]:
            self.failures.append(f"{txs['wrong_height']} acks name another height")
        if self.added is not None:
            result["new_validator"] = self._new_validator_signed(reference, validators)
        if self.expected_misbehaving:
            result["byzantine"] = self._byzantine_outcome(in_blocks, top)
        return result

    def _new_validator_signed(self, chain: dict[int, dict[str, Any]],
                              validators: dict[int, list[str]]) -> dict[str, Any]:
        added = self.added
        signed = []
        for h, entry in chain.items():
            cert = entry["commit"]
            addresses = validators.get(h, [])
            if any(s["validator_index"] < len(addresses) and
                   addresses[s["validator_index"]] == added["address"]
                   for s in cert["signatures"]):
                signed.append(h)
        out = {**added, "signed_commits": len(signed),
               "first_signed": min(signed) if signed else None}
        if not signed:
            self.failures.append(f"the added validator node{added['node']} never signed a commit")
        elif min(signed) < added["effective_height"]:
            self.failures.append("the added validator signed before its effective height")
        return out

    def _byzantine_outcome(self, in_blocks: list[dict], top: int) -> dict[str, Any]:
        bad = sorted(self.expected_misbehaving)
        against = [e for e in in_blocks if e["validator"] in self.expected_misbehaving]
        latest = self.net.call(0, "validators")
        still_in = [v["address"] for v in latest["validators"] if v["address"] in bad]
        if not against:
            self.failures.append("no evidence against the byzantine validator in any block")
        if still_in:
            self.failures.append("the byzantine validator is still in the validator set")
        return {"validators": bad, "evidence_blocks": sorted({e["included_at"] for e in against}),
                "removed": not still_in, "set_size_now": len(latest["validators"])}

    def wait_byzantine_removed(self) -> None:
        bad = self.expected_misbehaving
        try:
            wait_until(lambda: not any(v["address"] in bad for v in
                                       self.net.call(0, "validators")["validators"]),
                       60.0, "the byzantine validator's removal", interval=0.5)
        except AssertionError:
            pass  # reported by the check

    def execute(self) -> dict[str, Any]:
        started = time.monotonic()
        sc = self.scenario
        acks = self.workdir / "acks.jsonl"
        report: dict[str, Any] = {"scenario": sc.name, "chain_id": sc.chain_id,
                                  "validators": sc.validators, "full_nodes": sc.full_nodes,
                                  "duration_s": sc.duration_s, "byzantine": sc.byzantine}
        try:
            self.build()
            self.start()
            load_started = time.monotonic()
            self.start_load(acks)
            for p in sc.schedule():
                delay = load_started + p.at_s - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                self.apply(p)
            self.load_proc.wait(timeout=sc.duration_s + 240)
            self.heal()
            if self.expected_misbehaving:
                self.wait_byzantine_removed()
            top = self.settle()
            summary_file = Path(str(acks) + ".summary.json")
            load = json.loads(summary_file.read_text()) if summary_file.exists() else {}
            if self.load_proc.returncode != 0:
                self.failures.append(f"the load exited {self.load_proc.returncode}")
            results = self.check(top, acks)
            report.update({
                "txs_sent": load.get("sent"), "committed": results["acknowledged"],
                "committed_ok": results["acknowledged_ok"], "lost": results["lost"],
                "duplicates": results["duplicates"], "rejected": load.get("rejected"),
                "unknown": load.get("unknown"), "heights": self.net.heights(),
                "compared_height": top, "forks": results["forks"],
                "double_signs": results["double_signs"],
                "perturbations": self.records, "checks": results,
                "load": {k: load.get(k) for k in ("committed_by_type", "failed_by_type",
                                                  "rejected_by_reason", "retries",
                                                  "unknown_txs")}})
        except Exception as exc:  # the report must say what broke
            self.failures.append(f"run aborted: {type(exc).__name__}: {str(exc)[:2000]}")
            report["perturbations"] = self.records
        finally:
            if self.load_proc is not None and self.load_proc.poll() is None:
                self.load_proc.kill()
            if self.net is not None:
                self.net.kill_all()
        report["failures"] = self.failures
        report["passed"] = not self.failures
        report["elapsed_s"] = round(time.monotonic() - started, 1)
        self.report_dir.mkdir(parents=True, exist_ok=True)
        (self.report_dir / f"{sc.name}.json").write_text(json.dumps(report, indent=2) + "\n")
        return report


def run_scenario(name_or_path: str, workdir: Path, *, minutes: float | None = None,
                 report_dir: Path = ARTIFACTS) -> dict[str, Any]:
    scenario = Scenario.load(name_or_path)
    if minutes is not None:
        scenario.duration_s = minutes * 60
    workdir.mkdir(parents=True, exist_ok=True)
    return Run(scenario, workdir, report_dir).execute()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run one end-to-end fault scenario.")
    parser.add_argument("--scenario", required=True, help="a name under tests/e2e/scenarios "
                        "or a path to a TOML file")
    parser.add_argument("--minutes", type=float, help="override the load duration")
    parser.add_argument("--workdir", type=Path, help="where the testnet goes (default: "
                        "test-artifacts/e2e/<scenario>-run, replaced)")
    parser.add_argument("--report-dir", type=Path, default=ARTIFACTS)
    args = parser.parse_args(argv)
    name = Path(args.scenario).stem
    workdir = args.workdir or ARTIFACTS / f"{name}-run"
    if workdir.exists():
        shutil.rmtree(workdir)
    report = run_scenario(args.scenario, workdir, minutes=args.minutes,
                          report_dir=args.report_dir)
    keys = ("scenario", "txs_sent", "committed", "lost", "duplicates", "compared_height",
            "forks", "double_signs", "passed", "failures", "elapsed_s")
    print(json.dumps({k: report.get(k) for k in keys}, indent=2))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["Scenario", "Run", "run_scenario"]
