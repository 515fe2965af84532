"""`python -m node.demo`: a scripted commerce story run through the VM on an in-memory state.

Deterministic keys, no network, no disk: list -> buy -> ship -> track -> confirm -> review ->
reward, a cancel, a dispute resolved by the arbiter, an automatic refund after ship-by, one
tx that fails a business rule (included, fee charged) and one replay (rejected). Each block
prints its txs' outcomes and the new app hash. The placeholder for `make run` until the node
exists.
"""

from __future__ import annotations

from typing import Any

from commerce_vm import (
    BlockContext,
    GenesisParams,
    app_hash_of,
    decode_tx,
    execute_block,
    genesis_state,
    query,
    recompute_app_hash,
    sign_tx,
)
from commerce_vm import txtypes as T
from commerce_vm.params import fees_by_name
from core.address import address_from_pubkey, address_to_text
from core.hashing import sha256
from core.keys import PrivateKey

CHAIN_ID = "chainmerce-demo"
PEOPLE = ("alice", "bob", "carol", "andes_coffee", "carrier", "arbiter", "validator")


class Demo:
    def __init__(self) -> None:
        self.keys = {n: PrivateKey(sha256(b"chainmerce-demo/" + n.encode())) for n in PEOPLE}
        self.addr = {n: address_from_pubkey(k.public_key) for n, k in self.keys.items()}
        self.params = GenesisParams(
            chain_id=CHAIN_ID,
            validators=((self.keys["validator"].public_key, 10),),
            initial_balances=tuple(sorted((self.addr[n], 100_000) for n in PEOPLE)),
            arbiters=(self.addr["arbiter"],),
            min_fees=fees_by_name({}, default=5),
            rewards_pool=50_000,
            purchase_reward_bps=200,
            referral_reward_bps=100,
            review_reward=40,
            default_ship_within=3,
            default_confirm_within=4,
        )
        self.state = genesis_state(self.params)
        self.height = 0
        self.nonces: dict[str, int] = {}
        print(f"chain {CHAIN_ID}: genesis app hash {app_hash_of(self.state).hex()[:16]}…")
        print(f"  rewards pool {self.params.rewards_pool}, every account starts with 100000\n")

    def tx(self, who: str, tx_type: int, body: list[Any]) -> tuple[str, bytes]:
        nonce = self.nonces.get(who, 0)
        self.nonces[who] = nonce + 1
        return who, sign_tx(self.keys[who], CHAIN_ID, tx_type, nonce, self.params.min_fees[tx_type], body)

    def block(self, title: str, items: list[tuple[str, bytes]]) -> None:
        self.height += 1
        txs = [decode_tx(raw, CHAIN_ID) for _, raw in items]
        ctx = BlockContext(CHAIN_ID, self.height, 1_700_000_000_000 + 1000 * self.height,
                           self.addr["validator"])
        result = execute_block(self.state, self.params, ctx, txs, drop_rejected=True)
        self.state.apply(result.changes)
        print(f"block {self.height:>2}  {title}")
        for (who, _), tx, res in zip(items, txs, result.results, strict=True):
            mark = "ok " if res.ok else ("FAIL" if res.included else "REJ ")
            detail = "; ".join(self._describe(e) for e in res.events) if res.ok else f"{res.name}: {res.message}"
            print(f"   {mark} {who:<12} {tx.type_name:<8} {detail}")
        for event in result.events:
            print(f"   auto {'':<12} {'deadline':<8} {self._describe(event)}")
        print(f"          app hash {result.app_hash.hex()[:16]}…  ({len(result.changes)} state writes)")

    def _describe(self, event: Any) -> str:
        a = event.attributes
        if event.kind == "order_status":
            return f"order {a['order_id']} -> {a['status']} ({a['reason']})"
        if event.kind == "reward":
            return f"reward {a['amount']} to {self._name(a['to'])} ({a['reason']})"
        if event.kind in ("listing_created", "listing_updated"):
            return f"{event.kind.replace('_', ' ')} #{a['listing_id']}"
        if event.kind == "order_created":
            return f"order {a['order_id']} created, {a['amount']} in escrow"
        if event.kind == "transfer":
            return f"{a['amount']} to {self._name(a['to'])}"
        if event.kind == "resolution":
            return f"buyer gets {a['buyer_amount']}, merchant {a['merchant_amount']}"
        return f"{event.kind} " + ", ".join(f"{k}={v}" for k, v in a.items() if not isinstance(v, bytes))

    def _name(self, address: bytes) -> str:
        for name, a in self.addr.items():
            if a == address:
                return name
        return address_to_text(address)

    def run(self) -> None:
        A = self.addr
        self.block("the merchant lists two products", [
            self.tx("andes_coffee", T.LIST, [0, "Huila coffee 1kg", 1_000, 20, 0, 0,
                                             "Finca La Esperanza, Huila, Colombia; lot 42", b""]),
            self.tx("andes_coffee", T.LIST, [0, "Mountain honey 500g", 700, 5, 0, 0, "Cauca, Colombia", b""]),
        ])
        self.block("two buyers pay into escrow", [
            self.tx("alice", T.BUY, [1, 2, 1_000, A["carol"]]),  # carol referred alice
            self.tx("bob", T.BUY, [2, 1, 700, None]),
        ])
        self.block("the merchant ships alice's order", [
            self.tx("andes_coffee", T.SHIP, [1, "Servientrega", "SV-77812", A["carrier"],
                                             "Neiva warehouse", "sealed, 2 bags"]),
        ])
        self.block("the carrier records a checkpoint", [
            self.tx("carrier", T.TRACK, [1, "Bogota El Dorado", "export customs cleared"]),
        ])
        replay = self.tx("bob", T.CANCEL, [2])
        self.block("alice confirms; bob cancels; a stranger tries to confirm", [
            self.tx("alice", T.CONFIRM, [1]),
            replay,
            self.tx("carol", T.CONFIRM, [1]),
        ])
        self.block("bob's cancel is replayed (rejected); alice reviews; loyalty reward", [
            replay,
            self.tx("alice", T.REVIEW, [1, 5, "Excellent coffee, fast delivery"]),
            self.tx("andes_coffee", T.REWARD, [1, 150, "thanks for your order"]),
        ])
        self.block("bob buys coffee", [self.tx("bob", T.BUY, [1, 1, 1_000, None])])
        self.block("shipped", [self.tx("andes_coffee", T.SHIP, [3, "Servientrega", "SV-77990", None,
                                                                "Neiva warehouse", ""])])
        self.block("bob disputes: the bag arrived torn", [self.tx("bob", T.DISPUTE, [3, "bag torn"])])
        self.block("the arbiter splits the escrow 60/40", [
            self.tx("arbiter", T.RESOLVE, [3, 600, "40% of the beans were lost"]),
        ])
        self.block("alice buys honey; the merchant never ships it", [
            self.tx("alice", T.BUY, [2, 1, 700, None]),
        ])
        ship_by = query.order(self.state, 4)["ship_by"]
        while self.height < ship_by:
            self.block(f"waiting for ship-by height {ship_by}", [])
        self.summary()

    def summary(self) -> None:
        state = self.state
        print("\nprovenance of order 1:")
        trail = query.provenance(state, 1)
        print(f"   origin: {trail['listing']['origin']}")
        for cp in trail["checkpoints"]:
            print(f"   h{cp['height']:<3} {cp['kind']:<10} {cp['location']}: {cp['note']}")
        rep = query.reputation(state, self.addr["andes_coffee"])
        milli = rep["average_milli"]
        print(f"\nreputation of andes_coffee: {milli // 1000}.{milli % 1000:03d} stars over {rep['count']} review(s)")
        for order_id in range(1, 5):
            o = query.order(state, order_id)
            print(f"order {order_id}: {o['status']:<10} amount {o['amount']}")
        total = 0
        print()
        for name in PEOPLE:
            balance = query.account(state, self.addr[name])["balance"]
            total += balance
            print(f"{name:<13} {balance:>7}")
        pool = query.rewards_pool(state)
        total += pool["pool"] + pool["escrow"]
        print(f"{'rewards pool':<13} {pool['pool']:>7}   escrow {pool['escrow']}")
        genesis_total = sum(n for _, n in self.params.initial_balances) + self.params.rewards_pool
        assert total == genesis_total, "supply must be conserved"
        assert recompute_app_hash(state) == app_hash_of(state)
        print(f"\ntotal supply {total} (unchanged since genesis)")
        print(f"final app hash {app_hash_of(state).hex()}")


def main() -> None:
    Demo().run()


if __name__ == "__main__":
    main()
