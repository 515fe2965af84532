"""The CI fault suite: short end-to-end scenarios on real multi-process testnets.

Each scenario (tests/e2e/scenarios/*.toml) builds 4 validators + 1 full node with
`chainmerce testnet`, runs about a minute of mixed commerce load from a separate process,
applies its perturbations and checks agreement, txs, nonces, double signing and evidence
(tests/e2e/runner.py). Reports land in test-artifacts/e2e/<scenario>.json. The 30-minute
soak is `make soak` (docs/fault-testing.md). The unit tests at the end check the pieces
the scenarios rely on: the scenario files, the schedule, and that the checks catch breakage.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from node import byzantine
from node.config import ConfigError
from tests.e2e import checks
from tests.e2e.runner import ARTIFACTS, SCENARIOS, Scenario, run_scenario
from tests.network_helpers import network_available

CI_SCENARIOS = ("kill-restart", "pause-disconnect", "validator-change", "byzantine")

available, why = network_available()


@pytest.mark.slow
@pytest.mark.skipif(not available, reason=why)
@pytest.mark.parametrize("name", CI_SCENARIOS)
def test_fault_scenario(name: str, tmp_path: Path) -> None:
    report = run_scenario(name, tmp_path / name, report_dir=ARTIFACTS)
    assert report["passed"], json.dumps({k: report.get(k) for k in (
        "failures", "perturbations", "heights")}, indent=1)
    scenario = Scenario.load(name)
    assert report["lost"] == 0 and report["forks"] == 0 and report["double_signs"] == 0
    assert report["duplicates"] == 0
    assert report["committed"] > 100, "the load barely ran"
    assert len(report["perturbations"]) == len(scenario.schedule())
    by_type = report["checks"]["by_type"]
    if name != "byzantine":  # the short byzantine run may not reach every story
        assert set(by_type) >= {"transfer", "list", "buy", "ship", "track", "confirm",
                                "review", "reward", "cancel", "refund", "dispute",
                                "resolve", "delist"}, by_type
    if name == "validator-change":
        added = report["checks"]["new_validator"]
        assert added["signed_commits"] > 0 and added["first_signed"] >= added[
            "effective_height"]
    if name == "byzantine":
        outcome = report["checks"]["byzantine"]
        assert outcome["removed"] and outcome["evidence_blocks"]
        assert report["checks"]["honest_validators_accused"] == []


# --- the pieces ------------------------------------------------------------------------------


def test_every_scenario_file_loads_and_ci_ones_are_4_plus_1() -> None:
    names = sorted(p.stem for p in SCENARIOS.glob("*.toml"))
    assert set(CI_SCENARIOS) | {"soak"} <= set(names)
    for name in names:
        scenario = Scenario.load(name)
        assert scenario.schedule() == sorted(scenario.schedule(), key=lambda p: p.at_s)
    for name in CI_SCENARIOS:
        scenario = Scenario.load(name)
        assert (scenario.validators, scenario.full_nodes) == (4, 1)
        assert all(p.at_s + p.duration_s < scenario.duration_s for p in scenario.schedule())


def test_soak_cycles_every_perturbation_and_adds_the_validator_once() -> None:
    soak = Scenario.load("soak")
    assert soak.duration_s == 1800
    schedule = soak.schedule()
    kinds = [p.kind for p in schedule]
    assert set(kinds) == {"kill", "restart", "pause", "disconnect", "wipe", "add_validator"}
    assert kinds.count("add_validator") == 1
    assert kinds.count("kill") >= 10
    soak.duration_s = 300
    assert len(soak.schedule()) < len(schedule)


def test_bad_scenario_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('name = "bad"\nvalidators = 4\nduration_s = 5\n'
                    '[[perturbation]]\nat_s = 1\nkind = "explode"\nnode = 0\n')
    with pytest.raises(ValueError, match="bad perturbation"):
        Scenario.load(str(path))


def test_byzantine_mode_is_refused_outside_test_chains() -> None:
    assert byzantine.check_mode("none", "chainmerce-mainnet") == "none"
    assert byzantine.check_mode("double_prevote", "chainmerce-e2e-test") == "double_prevote"
    assert byzantine.check_mode("double_propose", "test-local") == "double_propose"
    with pytest.raises(ConfigError, match="only test chains"):
        byzantine.check_mode("double_precommit", "chainmerce-mainnet")
    with pytest.raises(ConfigError, match="must be one of"):
        byzantine.check_mode("evil", "chainmerce-e2e-test")


def test_conflicting_vote_is_a_valid_equivocation() -> None:
    from consensus.errors import EvidenceError
    from consensus.messages import (
        Vote,
        VoteType,
        make_evidence,
        verify_evidence,
        vote_sign_bytes,
    )
    from consensus.validators import Validator, ValidatorSet
    from core.keys import DOMAIN_VOTE, PrivateKey

    key = PrivateKey(bytes(range(32)))
    chain_id = "chainmerce-unit-test"
    validators = ValidatorSet([Validator(key.public_key, 10)])
    for block_hash in (bytes(32), None):
        sb = vote_sign_bytes(VoteType.PREVOTE, 5, 0, block_hash, 1000, 0)
        vote = Vote(VoteType.PREVOTE, 5, 0, block_hash, 1000, 0,
                    key.sign(DOMAIN_VOTE, chain_id, sb), sb)
        other = byzantine.conflicting_vote(vote, key, chain_id)
        assert other.block_hash != vote.block_hash
        assert (other.height, other.round, other.type) == (5, 0, VoteType.PREVOTE)
        verify_evidence(make_evidence(vote, other), validators, chain_id)  # raises if not
        assert other.verify(key.public_key, chain_id)
        # the check has teeth: a vote with a broken signature is not evidence
        forged = Vote(other.type, other.height, other.round, other.block_hash,
                      other.timestamp_ms, 0, bytes(64), other.sign_bytes)
        with pytest.raises(EvidenceError):
            verify_evidence(make_evidence(vote, forged), validators, chain_id)


def _chain(blocks: dict[int, list[dict]]) -> dict[int, dict]:
    return {h: {"block": {"header": {"hash": f"b{h}", "app_hash": f"a{h}",
                                     "prev_hash": f"b{h - 1}"},
                          "txs": txs, "evidence": [], "last_commit": None},
                "commit": {"height": h, "round": 0, "block_hash": f"b{h}", "signatures": []}}
            for h, txs in blocks.items()}


def test_checks_catch_lost_duplicate_and_replayed_txs(tmp_path: Path) -> None:
    tx = lambda h, s, n: {"hash": h, "sender": s, "nonce": n, "type": "transfer"}  # noqa: E731
    chain = _chain({1: [tx("t1", "A", 0)], 2: [tx("t2", "A", 1), tx("t1", "A", 0)]})
    acks = tmp_path / "acks.jsonl"
    acks.write_text("\n".join(json.dumps({"hash": h, "height": hh, "code": 0})
                              for h, hh in (("t1", 1), ("t2", 2), ("t9", 2))) + "\n")
    result = checks.check_txs(chain, acks, {"A": 2})
    assert result["lost"] == 1 and result["lost_txs"][0]["hash"] == "t9"
    assert result["duplicates"] == 1
    assert result["wrong_height"] == 1  # t1 is at heights 1 and 2
    assert {e["problem"] for e in result["nonce_errors"]} == {
        "nonces are not 0..n-1", "account next_nonce differs"}
    clean = checks.check_txs(_chain({1: [tx("t1", "A", 0)], 2: [tx("t2", "A", 1)]}), acks,
                             {"A": 2})
    assert clean["duplicates"] == 0 and clean["nonce_errors"] == [] and clean["lost"] == 1


def test_checks_catch_forks_and_double_signed_precommits() -> None:
    a, b = _chain({1: [], 2: []}), _chain({1: [], 2: []})
    assert checks.check_agreement({"node0": a, "node1": b}, 2) == []
    b[2]["block"]["header"]["app_hash"] = "different"
    forks = checks.check_agreement({"node0": a, "node1": b}, 2)
    assert [f["height"] for f in forks] == [2]
    sig = {"validator_index": 0, "timestamp_ms": 1, "signature": "00"}
    a[2]["commit"]["signatures"] = [sig]
    b[2]["commit"]["signatures"] = [sig]
    validators = {1: ["v0"], 2: ["v0"], 3: ["v0"]}
    assert checks.check_double_signing({"node0": a, "node1": b}, validators) == []
    b[2]["commit"]["block_hash"] = "other"
    double = checks.check_double_signing({"node0": a, "node1": b}, validators)
    assert double == [{"validator": "v0", "height": 2, "round": 0, "blocks": ["b2", "other"]}]
