"""`python -m tests.e2e.load`: a commerce load against a running testnet, in its own process.

    python -m tests.e2e.load --testnet DIR --duration 60 --workers 6 --out acks.jsonl

It signs with the dev keys (seeds in `<home>/keyring/*.json`) and with derived accounts (a
merchant and a buyer per worker) that the dev merchant and buyer fund by transfers first.
Each worker runs commerce stories in a loop, so every tx type is sent: list → buy → ship →
track → confirm → review → reward; list → buy → cancel → delist; list → buy → ship → refund;
list → buy → ship → dispute → resolve (arbiter key) → review; transfers both ways.

Txs go out with broadcast_tx_commit, round-robin over every node's RPC. A node that is
down, paused or cut off makes the call fail or time out; the load then looks the tx up
(`tx`) on every node, and re-submits the SAME signed bytes elsewhere, so a tx is never
re-signed with another nonce while it may still commit. Each account has at most one tx in
flight. Every tx that got a COMMITTED acknowledgement (the broadcast_tx_commit answer or a
later `tx` lookup) is appended to --out as one JSON line:
    {"hash", "height", "code", "type", "sender", "nonce", "via"}
and a summary (sent, committed, rejected, unknown, by type) is written to --out + ".summary.json".
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from commerce_vm import sign_tx
from commerce_vm import txtypes as T
from core.address import address_from_pubkey, address_to_text
from core.hashing import sha256
from core.keys import PrivateKey
from node.client import Client, ClientError
from node.rpc.errors import COMMIT_TIMEOUT, NODE_NOT_READY, TX_ALREADY_KNOWN
from node.testnet import load_manifest

FUND_AMOUNT = 20_000_000
PRICE = 1_000
CALL_TIMEOUT = 4.0
COMMIT_CALL_TIMEOUT = 12.0
TX_DEADLINE = 90.0  # give up on one tx (as "unknown") after this long


@dataclass
class Account:
    name: str
    key: PrivateKey
    nonce: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def address(self) -> bytes:
        return address_from_pubkey(self.key.public_key)

    @property
    def text(self) -> str:
        return address_to_text(self.address)


class Outcome:
    COMMITTED, REJECTED, UNKNOWN = "committed", "rejected", "unknown"


class Load:
    def __init__(self, testnet: Path, out: Path, seed: int = 1):
        manifest = load_manifest(testnet)
        self.chain_id = manifest.chain_id
        self.urls = [n.rpc_url for n in manifest.nodes]
        keyring = testnet / manifest.nodes[0].name / "keyring"
        self.dev = {name: Account(name, PrivateKey(bytes.fromhex(
            json.loads((keyring / f"{name}.json").read_text())["seed"])))
            for name in ("merchant", "buyer", "arbiter")}
        self.out = out
        self.rng = random.Random(seed)
        self._rr = itertools.count(self.rng.randrange(len(self.urls)))
        self._write = threading.Lock()
        self.sent = 0
        self.committed: Counter[str] = Counter()
        self.failed_included: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.unknown: list[dict[str, Any]] = []
        self.errors: Counter[str] = Counter()
        self.fee = 10
        self.stop_at = 0.0

    # --- RPC with fail-over -------------------------------------------------------------

    def next_url(self) -> str:
        return self.urls[next(self._rr) % len(self.urls)]

    def call_any(self, method: str, timeout: float = CALL_TIMEOUT, **params: Any) -> Any:
        last: Exception | None = None
        for _ in range(2 * len(self.urls)):
            try:
                return Client(self.next_url(), timeout=timeout).call(method, **params)
            except ClientError as exc:
                if exc.code is not None:
                    raise
                last = exc
                time.sleep(0.2)
        raise ClientError(f"no node answered {method}: {last}")

    def lookup(self, tx_hash: str) -> tuple[dict[str, Any], str] | None:
        """The committed tx from the first node whose index has it."""
        for url in self.urls:
            try:
                return Client(url, timeout=CALL_TIMEOUT).call("tx", hash=tx_hash), url
            except ClientError:
                continue
        return None

    # --- one tx -------------------------------------------------------------------------

    def send(self, account: Account, tx_type: int, body: list[Any]) -> dict[str, Any] | None:
        """Sign with the account's next nonce and deliver; the committed result (its
        `code` may be a business-rule failure) or None if it was refused or never seen."""
        with account.lock:
            if account.nonce is None:
                account.nonce = self.call_any("account", address=account.text)["next_nonce"]
            raw = sign_tx(account.key, self.chain_id, tx_type, account.nonce, self.fee, body)
            self.sent += 1
            outcome, result = self.deliver(raw)
            name = T.TYPE_NAMES[tx_type]
            if outcome == Outcome.COMMITTED:
                self.record(result, name, account, account.nonce)
                account.nonce += 1
                return result
            if outcome == Outcome.REJECTED:
                self.rejected[f"{name}:{result.get('name')}"] += 1
            else:
                self.unknown.append({"hash": sha256(raw).hex(), "type": name,
                                     "sender": account.text, "nonce": account.nonce})
            account.nonce = None  # re-read from the chain before the next tx
            return None

    def deliver(self, raw: bytes) -> tuple[str, dict[str, Any]]:
        tx_hash = sha256(raw).hex()
        deadline = time.monotonic() + TX_DEADLINE
        refusals = 0
        while time.monotonic() < deadline:
            url = self.next_url()
            try:
                answer = Client(url, timeout=COMMIT_CALL_TIMEOUT).call(
                    "broadcast_tx_commit", tx=raw.hex())
                answer["via"] = url
                return Outcome.COMMITTED, answer
            except ClientError as exc:
                name = exc.data.get("name") if isinstance(exc.data, dict) else None
                self.errors[name or ("unreachable" if exc.code is None else str(exc.code))] += 1
                retriable = exc.code in (None, COMMIT_TIMEOUT, NODE_NOT_READY,
                                         TX_ALREADY_KNOWN) or name in ("mempool_full",
                                                                       "sender_limit")
                if not retriable and name != "bad_nonce":
                    # A node still catching up may not know the order or listing yet: ask
                    # the others before calling it refused.
                    refusals += 1
                    if refusals >= len(self.urls):
                        return Outcome.REJECTED, {"name": name, "message": str(exc)}
                    time.sleep(0.3)
                    continue
            found = self._wait_lookup(tx_hash, 3.0)
            if found is not None:
                return Outcome.COMMITTED, found
            if name == "bad_nonce":  # not committed and the nonce is taken or ahead
                return Outcome.REJECTED, {"name": name}
        found = self.lookup(tx_hash)
        return (Outcome.COMMITTED, _from_lookup(*found)) if found else (Outcome.UNKNOWN, {})

    def _wait_lookup(self, tx_hash: str, seconds: float) -> dict[str, Any] | None:
        end = time.monotonic() + seconds
        while True:
            found = self.lookup(tx_hash)
            if found is not None:
                return _from_lookup(*found)
            if time.monotonic() >= end:
                return None
            time.sleep(0.5)

    def record(self, result: dict[str, Any], type_name: str, account: Account,
               nonce: int) -> None:
        if result.get("code", 0) == 0:
            self.committed[type_name] += 1
        else:
            self.failed_included[f"{type_name}:{result.get('name')}"] += 1
        line = {"hash": result["hash"], "height": result["height"], "code": result["code"],
                "type": type_name, "sender": account.text, "nonce": nonce,
                "via": result.get("via")}
        with self._write, self.out.open("a") as f:
            f.write(json.dumps(line) + "\n")

    # --- accounts and stories ------------------------------------------------------------

    def fund(self, workers: int) -> list[tuple[Account, Account]]:
        pairs = []
        for i in range(workers):
            m = Account(f"m{i}", PrivateKey(sha256(f"e2e-load/{self.chain_id}/m{i}".encode())))
            b = Account(f"b{i}", PrivateKey(sha256(f"e2e-load/{self.chain_id}/b{i}".encode())))
            pairs.append((m, b))
        threads = [threading.Thread(target=self._fund_from, args=(self.dev[src], targets))
                   for src, targets in (("merchant", [m for m, _ in pairs]),
                                        ("buyer", [b for _, b in pairs]))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return pairs

    def _fund_from(self, source: Account, targets: list[Account]) -> None:
        for target in targets:
            balance = self.call_any("account", address=target.text)["balance"]
            if balance < FUND_AMOUNT // 2:
                self.send(source, T.TRANSFER, [target.address, FUND_AMOUNT])

    def worker(self, index: int, merchant: Account, buyer: Account) -> None:
        rng = random.Random(index)
        stories = [self.story_happy, self.story_cancel, self.story_refund, self.story_dispute,
                   self.story_transfer]
        turn = index
        while time.time() < self.stop_at:
            story = stories[turn % len(stories)] if turn < 10 else rng.choice(stories)
            turn += 1
            try:
                story(merchant, buyer, rng)
            except ClientError as exc:  # every node unreachable for a moment
                self.errors[f"story:{exc}"[:60]] += 1
                time.sleep(1.0)

    def _list(self, merchant: Account, rng: random.Random) -> int | None:
        result = self.send(merchant, T.LIST, [0, f"item {rng.randrange(10**6)}", PRICE,
                                              50, 0, 0, "e2e load, loopback", b""])
        return _event_attr(result, "listing_created", "listing_id")

    def _buy(self, buyer: Account, listing: int | None) -> int | None:
        if listing is None or time.time() >= self.stop_at:
            return None
        result = self.send(buyer, T.BUY, [listing, 1, PRICE, None])
        return _event_attr(result, "order_created", "order_id")

    def _ok(self, result: dict[str, Any] | None) -> bool:
        return result is not None and result.get("code") == 0 and time.time() < self.stop_at

    def _ship(self, merchant: Account, order: int) -> dict[str, Any] | None:
        return self.send(merchant, T.SHIP, [order, "loopback post", f"LP-{order}", None,
                                            "warehouse", ""])

    def story_happy(self, merchant: Account, buyer: Account, rng: random.Random) -> None:
        order = self._buy(buyer, self._list(merchant, rng))
        if order is None or not self._ok(self._ship(merchant, order)):
            return
        if not self._ok(self.send(merchant, T.TRACK, [order, "hub", "in transit"])):
            return
        if not self._ok(self.send(buyer, T.CONFIRM, [order])):
            return
        if self._ok(self.send(buyer, T.REVIEW, [order, rng.randint(1, 5), "fine"])):
            self.send(merchant, T.REWARD, [order, 5, "thanks"])

    def story_cancel(self, merchant: Account, buyer: Account, rng: random.Random) -> None:
        listing = self._list(merchant, rng)
        order = self._buy(buyer, listing)
        if order is not None and self._ok(self.send(buyer, T.CANCEL, [order])):
            self.send(merchant, T.DELIST, [listing])

    def story_refund(self, merchant: Account, buyer: Account, rng: random.Random) -> None:
        order = self._buy(buyer, self._list(merchant, rng))
        if order is not None and self._ok(self._ship(merchant, order)):
            self.send(merchant, T.REFUND, [order, "out of stock after all"])

    def story_dispute(self, merchant: Account, buyer: Account, rng: random.Random) -> None:
        order = self._buy(buyer, self._list(merchant, rng))
        if order is None or not self._ok(self._ship(merchant, order)):
            return
        if not self._ok(self.send(buyer, T.DISPUTE, [order, "arrived damaged"])):
            return
        if self._ok(self.send(self.dev["arbiter"], T.RESOLVE, [order, PRICE // 2, "split"])):
            self.send(buyer, T.REVIEW, [order, 3, "resolved"])

    def story_transfer(self, merchant: Account, buyer: Account, rng: random.Random) -> None:
        if self._ok(self.send(merchant, T.TRANSFER, [buyer.address, rng.randint(1, 100)])):
            self.send(buyer, T.TRANSFER, [merchant.address, rng.randint(1, 100)])

    # --- run ------------------------------------------------------------------------------

    def run(self, duration: float, workers: int) -> dict[str, Any]:
        started = time.time()
        self.stop_at = started + duration
        params = self.call_any("params")
        self.fee = max(int(v) for v in params["min_fees"].values()) \
            if isinstance(params.get("min_fees"), dict) else self.fee
        pairs = self.fund(workers)
        threads = [threading.Thread(target=self.worker, args=(i, m, b), daemon=True)
                   for i, (m, b) in enumerate(pairs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(duration + TX_DEADLINE + 30)
        still_unknown = []
        for item in self.unknown:  # committed after we gave up on it?
            found = self.lookup(item["hash"])
            if found is None:
                still_unknown.append(item)
                continue
            result = _from_lookup(*found)
            account = Account(item["sender"], PrivateKey(bytes(32)))
            self.record(result, item["type"], account, item["nonce"])
        self.unknown = still_unknown
        return {"sent": self.sent, "committed": sum(self.committed.values()),
                "committed_failed": sum(self.failed_included.values()),
                "rejected": sum(self.rejected.values()), "unknown": len(self.unknown),
                "committed_by_type": dict(sorted(self.committed.items())),
                "failed_by_type": dict(sorted(self.failed_included.items())),
                "rejected_by_reason": dict(sorted(self.rejected.items())),
                "unknown_txs": self.unknown[:20], "retries": dict(self.errors.most_common(12)),
                "seconds": round(time.time() - started, 1)}


def _from_lookup(answer: dict[str, Any], url: str) -> dict[str, Any]:
    result = answer.get("result", {})
    return {"hash": answer["hash"], "height": answer["height"], "code": result.get("code", 0),
            "name": result.get("name"), "events": result.get("events", []), "via": url}


def _event_attr(result: dict[str, Any] | None, kind: str, attr: str) -> int | None:
    if result is None or result.get("code") != 0:
        return None
    for event in result.get("events", []):
        if event.get("kind") == kind:
            return int(event["attributes"][attr])
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--testnet", type=Path, required=True)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=6)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("")
    summary = Load(args.testnet, args.out, args.seed).run(args.duration, args.workers)
    Path(str(args.out) + ".summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: summary[k] for k in ("sent", "committed", "committed_failed",
                                                 "rejected", "unknown")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

