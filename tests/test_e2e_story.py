"""End to end: one real node process, a whole commerce story driven through the CLI.

Every CLI step is a `chainmerce` subprocess (`--json` parsed); every effect is then checked
over JSON-RPC against a ledger this test keeps itself: balances including every fee, escrow,
the rewards pool, order statuses, inventory, the provenance trail, reviews, reputation, tx
lookup by hash (with an inclusion proof) and tx_search by account.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.merkle import verify_inclusion
from node.client import Client
from tests.e2e_helpers import (  # noqa: F401 (fixtures)
    NodeHome,
    assert_one_line_error,
    free_port,
    node_homes_fixture,
    run_cli,
    running_node_fixture,
)

BPS = 10_000


@dataclass
class Ledger:
    """What the chain must hold, computed by the test from the txs it sent."""

    client: Client
    fees: dict[str, int]
    balances: dict[str, int]
    pool: int
    escrow: int = 0
    tx_hashes: dict[str, list[str]] = field(default_factory=dict)  # signer -> hashes

    @classmethod
    def snapshot(cls, client: Client, addresses: list[str]) -> Ledger:
        params = client.call("params")
        pool = client.call("rewards_pool")
        return cls(client, params["min_fees"],
                   {a: client.call("account", address=a)["balance"] for a in addresses},
                   pool["pool"], pool["escrow"])

    def paid_fee(self, signer: str, tx_type: str, answer: dict[str, Any]) -> None:
        self.balances[signer] -= self.fees[tx_type]
        self.pool += self.fees[tx_type]
        self.tx_hashes.setdefault(signer, []).append(answer["hash"])

    def move(self, source: str | None, target: str | None, amount: int) -> None:
        """Move amount between accounts; None stands for escrow on either side."""
        if source is None:
            self.escrow -= amount
        else:
            self.balances[source] -= amount
        if target is None:
            self.escrow += amount
        else:
            self.balances[target] += amount

    def from_pool(self, target: str, amount: int) -> None:
        self.pool -= amount
        self.balances[target] += amount

    def check(self) -> None:
        actual = {a: self.client.call("account", address=a)["balance"] for a in self.balances}
        assert actual == self.balances
        assert self.client.call("rewards_pool") == {"pool": self.pool, "escrow": self.escrow}


def _tx(home: NodeHome, ledger: Ledger, tx_type: str, signer_name: str, *flags: str) -> dict:
    """`chainmerce tx TYPE --from NAME FLAGS --json`: must commit with code 0."""
    answer = home.cli("tx", tx_type, "--from", signer_name, *flags)
    assert answer["code"] == 0, answer
    assert answer["name"] == "ok"
    assert answer["height"] >= 1
    ledger.paid_fee(home.accounts.get(signer_name) or signer_name, tx_type.replace("-", "_"),
                    answer)
    return answer


def _event(answer: dict, kind: str) -> dict:
    found = [e["attributes"] for e in answer["events"] if e["kind"] == kind]
    assert found, f"no {kind} event in {answer['events']}"
    return found[0]


def test_commerce_story(running_node: NodeHome) -> None:
    home = running_node
    rpc = home.client()
    merchant, buyer, arbiter = (home.accounts[n] for n in ("merchant", "buyer", "arbiter"))

    # A fourth account for the carrier: a new unencrypted key, funded by a transfer.
    carrier = home.cli("keys", "new", "carrier", "--insecure-no-passphrase")["address"]
    assert carrier.startswith("cm1")
    home.accounts["carrier"] = carrier
    ledger = Ledger.snapshot(rpc, [merchant, buyer, arbiter, carrier])
    assert ledger.balances[carrier] == 0 and ledger.escrow == 0
    supply = sum(ledger.balances.values()) + ledger.pool
    params = rpc.call("params")
    assert params["arbiters"] == [arbiter]

    answer = _tx(home, ledger, "transfer", "merchant", "--to", "carrier", "--amount", "1000")
    ledger.move(merchant, carrier, 1000)
    ledger.check()

    # --- list -> buy -> ship -> track -> confirm -> review -> reward -------------------------
    answer = _tx(home, ledger, "list", "merchant", "--title", "Alpaca scarf", "--price", "2500",
                 "--quantity", "5", "--origin", "Cusco, Peru: Q'ero weavers cooperative")
    scarf = _event(answer, "listing_created")["listing_id"]
    listing = rpc.call("listing", id=scarf)
    assert (listing["merchant"], listing["price"], listing["quantity"], listing["active"]) == \
        (merchant, 2500, 5, True)
    assert listing["ship_within"] == params["default_ship_within"]
    ledger.check()

    answer = _tx(home, ledger, "buy", "buyer", "--listing", str(scarf), "--quantity", "2")
    first = _event(answer, "order_created")["order_id"]
    ledger.move(buyer, None, 5000)
    ledger.check()
    order = rpc.call("order", id=first)
    assert (order["status"], order["buyer"], order["merchant"]) == ("PAID", buyer, merchant)
    assert (order["amount"], order["escrow"], order["quantity"]) == (5000, 5000, 2)
    assert order["ship_by"] == answer["height"] + listing["ship_within"]
    assert rpc.call("listing", id=scarf)["quantity"] == 3
    assert rpc.call("listing", id=scarf)["sold"] == 2

    answer = _tx(home, ledger, "ship", "merchant", "--order", str(first), "--carrier", "DHL",
                 "--tracking", "JD014600001234", "--carrier-address", "carrier",
                 "--location", "Lima", "--note", "handed to DHL")
    ship_height = answer["height"]
    order = rpc.call("order", id=first)
    assert (order["status"], order["carrier"], order["tracking_id"], order["carrier_address"]) \
        == ("SHIPPED", "DHL", "JD014600001234", carrier)
    assert order["confirm_by"] == ship_height + order["confirm_within"]
    ledger.check()

    _tx(home, ledger, "track", "merchant", "--order", str(first), "--location", "Miami hub")
    _tx(home, ledger, "track", "carrier", "--order", str(first), "--location", "Madrid customs",
        "--note", "cleared")
    trail = rpc.call("provenance", order=first)
    assert trail["listing"]["origin"] == "Cusco, Peru: Q'ero weavers cooperative"
    assert (trail["carrier"], trail["tracking_id"], trail["status"]) == \
        ("DHL", "JD014600001234", "SHIPPED")
    assert [(c["kind"], c["location"], c["actor"]) for c in trail["checkpoints"]] == [
        ("shipped", "Lima", merchant), ("checkpoint", "Miami hub", merchant),
        ("checkpoint", "Madrid customs", carrier)]
    assert trail["checkpoints"][0]["height"] == ship_height
    assert trail["checkpoints"][2]["note"] == "cleared"
    ledger.check()

    _tx(home, ledger, "confirm", "buyer", "--order", str(first))
    ledger.move(None, merchant, 5000)
    ledger.from_pool(buyer, 5000 * params["purchase_reward_bps"] // BPS)
    order = rpc.call("order", id=first)
    assert (order["status"], order["escrow"]) == ("COMPLETED", 0)
    ledger.check()

    _tx(home, ledger, "review", "buyer", "--order", str(first), "--rating", "5",
        "--text", "warm and soft")
    ledger.from_pool(buyer, params["review_reward"])
    ledger.check()
    reviews = rpc.call("reviews", merchant=merchant)["items"]
    assert [(r["order_id"], r["buyer"], r["rating"], r["text"]) for r in reviews] == \
        [(first, buyer, 5, "warm and soft")]
    assert rpc.call("reviews", listing=scarf)["items"] == reviews
    reputation = rpc.call("reputation", merchant=merchant)
    assert (reputation["count"], reputation["rating_sum"], reputation["average_milli"]) == \
        (1, 5, 5000)

    reward = _tx(home, ledger, "reward", "merchant", "--order", str(first), "--amount", "300",
                 "--memo", "thanks")
    ledger.move(merchant, buyer, 300)
    assert rpc.call("order", id=first)["rewarded"] == 300
    ledger.check()

    # --- cancel: a PAID order, escrow back, inventory restored (human CLI output) ---------------
    proc = run_cli("tx", "buy", "--home", str(home.path), "--from", "buyer",
                   "--listing", str(scarf))
    lines = dict(line.split(": ", 1) for line in proc.stdout.splitlines() if ": " in line)
    assert lines["result"] == "ok"
    second = int(lines["order id"])
    ledger.paid_fee(buyer, "buy", {"hash": proc.stdout.split()[1]})
    ledger.move(buyer, None, 2500)
    ledger.check()
    assert rpc.call("listing", id=scarf)["quantity"] == 2
    _tx(home, ledger, "cancel", "buyer", "--order", str(second))
    ledger.move(None, buyer, 2500)
    ledger.check()
    assert rpc.call("order", id=second)["status"] == "CANCELLED"
    assert rpc.call("listing", id=scarf)["quantity"] == 3
    assert rpc.call("listing", id=scarf)["sold"] == 2

    # --- dispute resolved by the arbiter with a split; a review of a RESOLVED order -----------
    answer = _tx(home, ledger, "buy", "buyer", "--listing", str(scarf))
    third = _event(answer, "order_created")["order_id"]
    ledger.move(buyer, None, 2500)
    _tx(home, ledger, "ship", "merchant", "--order", str(third), "--carrier", "Serpost",
        "--tracking", "RR123")
    _tx(home, ledger, "dispute", "buyer", "--order", str(third), "--reason", "arrived torn")
    assert rpc.call("order", id=third)["status"] == "DISPUTED"
    ledger.check()
    answer = _tx(home, ledger, "resolve", "arbiter", "--order", str(third),
                 "--buyer-amount", "1500", "--note", "half torn")
    assert _event(answer, "resolution")["merchant_amount"] == 1000
    ledger.move(None, buyer, 1500)
    ledger.move(None, merchant, 1000)
    order = rpc.call("order", id=third)
    assert (order["status"], order["escrow"]) == ("RESOLVED", 0)
    ledger.check()
    _tx(home, ledger, "review", "buyer", "--order", str(third), "--rating", "2")
    ledger.from_pool(buyer, params["review_reward"])
    reputation = rpc.call("reputation", merchant=merchant)
    assert (reputation["count"], reputation["rating_sum"]) == (2, 7)
    assert (reputation["weighted_sum"], reputation["weight_sum"]) == \
        (5 * 5000 + 2 * 2500, 7500)
    ledger.check()

    # --- automatic refund after the ship-by deadline -------------------------------------------
    answer = _tx(home, ledger, "list", "merchant", "--title", "Clay pot", "--price", "700",
                 "--quantity", "2", "--ship-within", "3")
    pot = _event(answer, "listing_created")["listing_id"]
    answer = _tx(home, ledger, "buy", "buyer", "--listing", str(pot), "--quantity", "2")
    late = _event(answer, "order_created")["order_id"]
    order = rpc.call("order", id=late)
    assert order["ship_by"] == answer["height"] + 3 and order["status"] == "PAID"
    assert rpc.call("listing", id=pot)["quantity"] == 0
    ledger.move(buyer, None, 1400)
    ledger.check()
    home.wait_height(order["ship_by"] + 1)
    order = rpc.call("order", id=late)
    assert (order["status"], order["escrow"], order["closed_height"]) == \
        ("REFUNDED", 0, order["ship_by"])
    ledger.move(None, buyer, 1400)
    ledger.check()  # buyer has the price back; only the buy fee is gone
    listing = rpc.call("listing", id=pot)
    assert (listing["quantity"], listing["sold"]) == (2, 0)
    # The merchant can no longer ship it.
    late_ship = home.cli_raw("tx", "ship", "--from", "merchant", "--order", str(late),
                             "--carrier", "DHL", "--tracking", "X")
    assert_one_line_error(late_ship, "REFUNDED")
    ledger.check()

    # --- the whole story in indexes: orders, tx by hash, tx_search ------------------------------
    statuses = {o["id"]: o["status"] for o in rpc.call("orders", buyer=buyer)["items"]}
    assert statuses == {first: "COMPLETED", second: "CANCELLED", third: "RESOLVED",
                        late: "REFUNDED"}
    assert [o["id"] for o in rpc.call("orders", listing=scarf)["items"]] == [first, second, third]
    assert {item["id"] for item in rpc.call("listings", merchant=merchant)["items"]} == {scarf, pot}

    for signer, hashes in ledger.tx_hashes.items():
        for tx_hash in hashes:
            found = rpc.call("tx", hash=tx_hash)
            assert found["result"]["code"] == 0 and found["result"]["name"] == "ok"
            assert found["tx"]["sender"] == signer
            assert found["result"]["fee_charged"] == ledger.fees[found["tx"]["type"]]
            block = rpc.call("block", height=found["height"])
            assert block["txs"][found["index"]]["hash"] == tx_hash

    proven = rpc.call("tx", hash=ledger.tx_hashes[buyer][0], prove=True)
    proof = proven["proof"]
    assert proven["tx"]["type"] == "buy"
    assert verify_inclusion(bytes.fromhex(proven["tx"]["raw"]), proof["index"], proof["total"],
                            [bytes.fromhex(a) for a in proof["aunts"]],
                            bytes.fromhex(proof["txs_root"]))
    assert not verify_inclusion(bytes.fromhex(proven["tx"]["raw"]) + b"x", proof["index"],
                                proof["total"], [bytes.fromhex(a) for a in proof["aunts"]],
                                bytes.fromhex(proof["txs_root"]))

    searched: list[str] = []
    cursor = None
    while True:
        page = rpc.call("tx_search", account=buyer, limit=3, cursor=cursor)
        searched += [t["hash"] for t in page["txs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(searched) == len(set(searched))
    # Every tx the buyer signed is there, and txs of others that name it (the reward);
    # txs that never involved the buyer are not.
    assert set(ledger.tx_hashes[buyer]) <= set(searched)
    assert reward["hash"] in searched
    assert ledger.tx_hashes[merchant][0] not in searched  # the transfer to the carrier
    heights = [rpc.call("tx", hash=h)["height"] for h in searched]
    assert heights == sorted(heights, reverse=True)

    # Token supply never changed: balances + escrow + pool.
    assert sum(ledger.balances.values()) + ledger.pool + ledger.escrow == supply

    # CLI queries agree with RPC.
    assert home.cli("query", "account", "buyer")["balance"] == ledger.balances[buyer]
    assert home.cli("query", "order", str(first))["status"] == "COMPLETED"
    assert home.cli("query", "reputation", "merchant") == rpc.call("reputation", merchant=merchant)
    assert len(home.cli("query", "provenance", str(first))["checkpoints"]) == 3


def test_cli_errors_are_one_line(running_node: NodeHome) -> None:
    home = running_node
    rpc = home.client()
    before = {n: rpc.call("account", address=a) for n, a in home.accounts.items()}

    unknown_key = home.cli_raw("tx", "transfer", "--from", "nobody", "--to", "buyer",
                               "--amount", "1")
    assert_one_line_error(unknown_key, "nobody")

    good = home.accounts["buyer"]
    typo = good[:-3] + ("q" if good[-3] != "q" else "p") + good[-2:]
    bad_address = home.cli_raw("tx", "transfer", "--from", "merchant", "--to", typo,
                               "--amount", "1")
    assert_one_line_error(bad_address)
    unknown_recipient = home.cli_raw("query", "account", "cm1notanaddress")
    assert_one_line_error(unknown_recipient)

    too_much = home.cli_raw("tx", "transfer", "--from", "merchant", "--to", "buyer",
                            "--amount", str(10**15))
    assert_one_line_error(too_much, "is below")

    unreachable = run_cli("query", "status", "--home", str(home.path),
                          "--node", f"http://127.0.0.1:{free_port()}", check=False)
    assert_one_line_error(unreachable, "cannot reach node")
    unreachable_tx = run_cli("tx", "transfer", "--home", str(home.path), "--from", "merchant",
                             "--to", "buyer", "--amount", "1",
                             "--node", f"http://127.0.0.1:{free_port()}", check=False)
    assert_one_line_error(unreachable_tx, "cannot reach node")

    missing = home.cli_raw("query", "order", "999")
    assert_one_line_error(missing, "not found")

    # Nothing above changed any account (no fee was charged for the refused txs).
    assert {n: rpc.call("account", address=a) for n, a in home.accounts.items()} == before

    # A business-rule failure: reviewing the same order twice.
    listing = home.cli("tx", "list", "--from", "merchant", "--title", "Mug", "--price", "10",
                       "--quantity", "1")
    listing_id = _event(listing, "listing_created")["listing_id"]
    bought = home.cli("tx", "buy", "--from", "buyer", "--listing", str(listing_id))
    order_id = _event(bought, "order_created")["order_id"]
    home.cli("tx", "ship", "--from", "merchant", "--order", str(order_id), "--carrier", "UPS",
             "--tracking", "1Z")
    home.cli("tx", "confirm", "--from", "buyer", "--order", str(order_id))
    first = home.cli("tx", "review", "--from", "buyer", "--order", str(order_id), "--rating", "4")
    assert first["code"] == 0
    nonce = rpc.call("account", address=home.accounts["buyer"])["nonce"]
    again = home.cli_raw("tx", "review", "--from", "buyer", "--order", str(order_id),
                         "--rating", "1")
    assert_one_line_error(again, "already")
    assert again.returncode == 1
    assert rpc.call("account", address=home.accounts["buyer"])["nonce"] == nonce
    assert rpc.call("reputation", merchant=home.accounts["merchant"])["count"] == 1
