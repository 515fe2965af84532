"""JSON views of chain objects for RPC answers: hashes as hex, addresses as cm1 text."""

from __future__ import annotations

from typing import Any

import commerce_vm as vm
from commerce_vm import txtypes as T
from consensus.block import Block, Header
from consensus.messages import CommitCertificate
from consensus.validators import ValidatorSet
from core.address import address_from_pubkey, address_to_text
from core.hashing import sha256


def _value(value: Any) -> Any:
    if isinstance(value, bytes):
        return address_to_text(value) if len(value) == 20 else value.hex()
    if isinstance(value, (list, tuple)):
        return [_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _value(v) for k, v in value.items()}
    return value


def tx_view(tx: vm.Tx) -> dict[str, Any]:
    return {"hash": tx.hash.hex(), "type": tx.type_name,
            "sender": address_to_text(tx.sender_address), "sender_pub_key": tx.sender.hex(),
            "nonce": tx.nonce, "fee": tx.fee,
            "body": {name: _value(value) for name, value in zip(tx.body._fields, tx.body,
                                                                 strict=True)},
            "size": len(tx.raw)}


def raw_tx_view(raw: bytes, chain_id: str) -> dict[str, Any]:
    try:
        view = tx_view(vm.decode_tx(raw, chain_id))
    except vm.VMError as err:
        view = {"undecodable": err.name}
    view["raw"] = raw.hex()
    return view


def result_view(result: dict[str, Any]) -> dict[str, Any]:
    return {"code": result["code"], "name": result["name"], "message": result["message"],
            "fee_charged": result["fee_charged"],
            "type": T.TYPE_NAMES.get(result["tx_type"], str(result["tx_type"])),
            "events": [{"kind": e["kind"], "attributes": _value(e["attributes"])}
                       for e in result["events"]]}


def header_view(header: Header) -> dict[str, Any]:
    return {"chain_id": header.chain_id, "height": header.height, "time_ms": header.time_ms,
            "hash": header.hash.hex(), "prev_hash": header.prev_hash.hex(),
            "last_commit_hash": header.last_commit_hash.hex(), "txs_root": header.txs_root.hex(),
            "app_hash": header.app_hash.hex(), "validators_hash": header.validators_hash.hex(),
            "next_validators_hash": header.next_validators_hash.hex(),
            "evidence_hash": header.evidence_hash.hex(),
            "proposer": address_to_text(header.proposer_address)}


def commit_view(cert: CommitCertificate | None) -> dict[str, Any] | None:
    if cert is None:
        return None
    return {"height": cert.height, "round": cert.round, "block_hash": cert.block_hash.hex(),
            "signatures": [{"validator_index": s.validator_index, "timestamp_ms": s.timestamp_ms,
                            "signature": s.signature.hex()} for s in cert.signatures]}


def block_view(block: Block, chain_id: str, hashes_only: bool = False) -> dict[str, Any]:
    # Decoding a tx for its view costs ~50x its hash: a client following the chain asks
    # for hashes only, like Ethereum's getBlock without full transactions.
    txs = ([sha256(raw).hex() for raw in block.txs] if hashes_only
           else [raw_tx_view(raw, chain_id) for raw in block.txs])
    return {"header": header_view(block.header),
            "txs": txs,
            "evidence": [{"height": e.height, "validator_index": e.validator_index,
                          "hash": e.hash().hex()} for e in block.evidence],
            "last_commit": commit_view(block.last_commit)}


def validators_view(validators: ValidatorSet, height: int) -> dict[str, Any]:
    return {"height": height, "total_power": validators.total_power,
            "validators": [{"address": address_to_text(address_from_pubkey(v.pubkey)),
                            "pub_key": v.pubkey.hex(), "power": v.power}
                           for v in validators.validators]}
