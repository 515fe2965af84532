"""Chain-wide checks of a finished fault run, read over JSON-RPC from every node.

- agreement: every node has the same block hash and app hash at every height up to the
  compared height (each difference counts as a fork);
- txs: every tx acknowledged as committed (the load's ack file) is in the chain exactly
  once, at the acknowledged height; no tx hash appears twice; each sender's nonces in the
  chain are exactly 0..n-1 and its account's next_nonce is n (no tx applied twice);
- double signing: per (validator, height, round) every precommit in any stored commit
  certificate or block last_commit names one block; duplicate-vote evidence in blocks and
  in node logs names only the validators expected to misbehave.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from tests.e2e_helpers import batch_call

BATCH = 20
EVIDENCE_LOG = re.compile(r"duplicate-vote evidence against validator #(\d+) at height (\d+)")


def fetch_chain(url: str, top: int) -> dict[int, dict[str, Any]]:
    """Blocks 1..top with their stored commit certificates, BATCH heights per request."""
    out: dict[int, dict[str, Any]] = {}
    for low in range(1, top + 1, BATCH):
        heights = list(range(low, min(top, low + BATCH - 1) + 1))
        calls = [(m, {"height": h}) for h in heights for m in ("block", "commit")]
        replies = batch_call(url, calls)
        for i, h in enumerate(heights):
            out[h] = {"block": replies[2 * i], "commit": replies[2 * i + 1]["commit"]}
    return out


def fetch_validators(url: str, top: int) -> dict[int, list[str]]:
    """Validator addresses (index order) at each height 1..top+1."""
    out: dict[int, list[str]] = {}
    heights = list(range(1, top + 2))
    for start in range(0, len(heights), BATCH):
        part = heights[start:start + BATCH]
        replies = batch_call(url, [("validators", {"height": h}) for h in part])
        for h, reply in zip(part, replies, strict=True):
            out[h] = [v["address"] for v in reply["validators"]]
    return out


def check_agreement(chains: dict[str, dict[int, dict[str, Any]]], top: int) -> list[dict]:
    names = sorted(chains)
    reference = chains[names[0]]
    forks = []
    for h in range(1, top + 1):
        ref = reference[h]["block"]["header"]
        if h > 1 and ref["prev_hash"] != reference[h - 1]["block"]["header"]["hash"]:
            forks.append({"height": h, "what": "broken link", "node": names[0]})
        for name in names[1:]:
            other = chains[name][h]["block"]["header"]
            if (other["hash"], other["app_hash"]) != (ref["hash"], ref["app_hash"]):
                forks.append({"height": h, "nodes": [names[0], name],
                              "hashes": [ref["hash"], other["hash"]],
                              "app_hashes": [ref["app_hash"], other["app_hash"]]})
    return forks


def check_double_signing(chains: dict[str, dict[int, dict[str, Any]]],
                         validators: dict[int, list[str]]) -> list[dict]:
    seen: dict[tuple[str, int, int], set[str]] = defaultdict(set)
    for chain in chains.values():
        for entry in chain.values():
            certs = [entry["commit"], entry["block"].get("last_commit")]
            for cert in certs:
                if not cert:
                    continue
                addresses = validators.get(cert["height"], [])
                for sig in cert["signatures"]:
                    index = sig["validator_index"]
                    who = addresses[index] if index < len(addresses) else f"#{index}"
                    seen[(who, cert["height"], cert["round"])].add(cert["block_hash"])
    return [{"validator": k[0], "height": k[1], "round": k[2], "blocks": sorted(v)}
            for k, v in seen.items() if len(v) > 1]


def evidence_in_blocks(chain: dict[int, dict[str, Any]],
                       validators: dict[int, list[str]]) -> list[dict]:
    found = []
    for h in sorted(chain):
        for ev in chain[h]["block"].get("evidence", []):
            addresses = validators.get(ev["height"], [])
            index = ev["validator_index"]
            found.append({"included_at": h, "height": ev["height"], "validator_index": index,
                          "validator": addresses[index] if index < len(addresses) else None})
    return found


def evidence_in_logs(logs: dict[str, Path], validators: dict[int, list[str]]) -> list[dict]:
    found = []
    for name, path in sorted(logs.items()):
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        for index, height in {(int(i), int(h)) for i, h in EVIDENCE_LOG.findall(text)}:
            addresses = validators.get(height, [])
            found.append({"node": name, "height": height, "validator_index": index,
                          "validator": addresses[index] if index < len(addresses) else None})
    return sorted(found, key=lambda e: (e["height"], e["node"]))


def check_txs(chain: dict[int, dict[str, Any]], acks_file: Path,
              next_nonces: dict[str, int]) -> dict[str, Any]:
    """Compare the chain's txs with the acknowledged ones and the accounts' nonces."""
    where: dict[str, list[int]] = defaultdict(list)
    nonces: dict[str, list[int]] = defaultdict(list)
    for h in sorted(chain):
        for tx in chain[h]["block"]["txs"]:
            where[tx["hash"]].append(h)
            nonces[tx["sender"]].append(tx["nonce"])
    duplicates = {k: v for k, v in where.items() if len(v) > 1}
    acks = [json.loads(line) for line in acks_file.read_text().splitlines() if line.strip()] \
        if acks_file.exists() else []
    lost = [a for a in acks if a["hash"] not in where]
    wrong_height = [a for a in acks if a["hash"] in where and where[a["hash"]] != [a["height"]]]
    ack_counts = Counter(a["hash"] for a in acks)
    nonce_errors = []
    for sender, seq in nonces.items():
        if sorted(seq) != list(range(len(seq))):
            nonce_errors.append({"sender": sender, "problem": "nonces are not 0..n-1",
                                 "nonces": sorted(seq)[:50]})
        expected = next_nonces.get(sender)
        if expected is not None and expected != len(seq):
            nonce_errors.append({"sender": sender, "problem": "account next_nonce differs",
                                 "next_nonce": expected, "txs_in_chain": len(seq)})
    return {"txs_in_chain": len(where), "acknowledged": len(ack_counts),
            "acknowledged_ok": sum(1 for a in acks if a["code"] == 0),
            "lost": len(lost), "lost_txs": lost[:20], "duplicates": len(duplicates),
            "duplicate_txs": dict(list(duplicates.items())[:20]),
            "wrong_height": len(wrong_height), "nonce_errors": nonce_errors[:20],
            "senders": len(nonces), "by_type": dict(Counter(
                tx["type"] for h in chain for tx in chain[h]["block"]["txs"]))}
