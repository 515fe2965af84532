"""node.app.CommerceApp: a decided block is executed once per node, and what is stored at
its commit is the same whichever way the execution was reached."""

from __future__ import annotations

from dataclasses import dataclass, replace

import commerce_vm as vm
from commerce_vm import query
from commerce_vm import txtypes as T
from consensus.block import Block, Header, txs_root
from node.app import CommerceApp, read_tx_record
from node.genesis import Genesis
from storage.chaindb import ChainDB
from storage.kv import MemoryStore
from tests.vm_helpers import KEYS, addr, default_params

ZERO = b"\x00" * 32
FEE = 10


@dataclass(frozen=True)
class _Certificate:
    """Only what the commit stores of a certificate: its bytes."""

    def encode(self) -> bytes:
        return b"certificate"


def _app() -> CommerceApp:
    app = CommerceApp(ChainDB(MemoryStore()), Genesis(0, 1, default_params()))
    app.ensure_genesis()
    return app


def _txs(params: vm.GenesisParams) -> tuple[bytes, ...]:
    chain = params.chain_id
    return tuple(vm.sign_tx(KEYS["alice"], chain, T.TRANSFER, n, FEE, [addr(KEYS["bob"]), 5])
                 for n in range(3))


def _block(txs: tuple[bytes, ...], app_hash: bytes, time_ms: int = 1_000) -> Block:
    header = Header(default_params().chain_id, 1, time_ms, ZERO, ZERO, txs_root(txs), app_hash,
                    ZERO, ZERO, ZERO, addr(KEYS["val1"]))
    return Block(header, txs, (), None)


def _no_evidence(_height: int):
    raise AssertionError("these blocks carry no evidence")


def _count_decodes(app: CommerceApp) -> list[bytes]:
    seen: list[bytes] = []
    decode = app._decode

    def counting(raw: bytes, tx_hash: bytes) -> vm.Tx:
        seen.append(raw)
        return decode(raw, tx_hash)

    app._decode = counting  # type: ignore[method-assign]
    return seen


def _app_hash_of(txs: tuple[bytes, ...]) -> bytes:
    return _app().process_proposal(_block(txs, ZERO), _no_evidence).app_hash


def test_a_validators_commit_reuses_the_execution_of_the_block_it_processed() -> None:
    app = _app()
    txs = _txs(app.params)
    block = _block(txs, _app_hash_of(txs))
    decoded = _count_decodes(app)
    assert app.process_proposal(block, _no_evidence).valid
    assert len(decoded) == len(txs)
    committed = app.commit(block, _Certificate(), _no_evidence, lambda _updates: b"state")
    assert len(decoded) == len(txs), "the commit decoded the block's txs again"
    assert [r.code for r in committed.execution.results] == [0, 0, 0]
    assert app.last_app_hash() == block.header.app_hash
    assert read_tx_record(app.db, committed.txs[2].hash) is not None


def test_a_block_never_processed_is_executed_at_its_commit_to_the_same_state() -> None:
    processed, fresh = _app(), _app()
    txs = _txs(processed.params)
    block = _block(txs, _app_hash_of(txs))
    assert processed.process_proposal(block, _no_evidence).valid
    decoded = _count_decodes(fresh)
    for app in (processed, fresh):
        app.commit(block, _Certificate(), _no_evidence, lambda _updates: b"state")
    assert len(decoded) == len(txs)
    assert fresh.last_app_hash() == processed.last_app_hash() == block.header.app_hash
    alice = addr(KEYS["alice"])
    assert query.account(fresh.state, alice) == query.account(processed.state, alice)


def test_another_block_of_the_same_txs_is_not_taken_for_the_processed_one() -> None:
    app = _app()
    txs = _txs(app.params)
    app_hash = _app_hash_of(txs)
    first, later = _block(txs, app_hash), _block(txs, app_hash, time_ms=2_000)
    assert app.process_proposal(first, _no_evidence).valid
    decoded = _count_decodes(app)
    app.commit(later, _Certificate(), _no_evidence, lambda _updates: b"state")
    assert len(decoded) == len(txs)  # its own header: looked up by its own execution key
    assert app.last_app_hash() == app_hash


def test_a_block_under_a_known_hash_with_another_body_is_executed_as_it_is() -> None:
    """The engine never passes such a block (it checks the body against the header), but
    the lookup by hash must not return another body's run if something else did."""
    app = _app()
    txs = _txs(app.params)
    block = _block(txs, _app_hash_of(txs))
    assert app.process_proposal(block, _no_evidence).valid
    forged = replace(block, txs=txs[:1])  # same header, so the same hash
    assert forged.hash == block.hash
    decoded = _count_decodes(app)
    assert app.process_proposal(forged, _no_evidence).app_hash != block.header.app_hash
    assert len(decoded) == 1
