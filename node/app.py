"""commerce_vm and the chain database behind consensus's Application boundary.

Blocks are executed once per node: the proposer's prepare_proposal or a validator's
process_proposal leaves the BlockExecution in a small cache, and the commit reuses it
(a validator's found by the block's hash).
Within that execution, a tx whose mempool check ran on the same values it meets in the
block is not run again: its recorded writes are applied (commerce_vm.reuse). The
commit writes block, certificate, state changes, tx index, tx results and the next
consensus ChainState in ONE synced batch, so a crash leaves all of it or none of it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import commerce_vm as vm
from commerce_vm.reuse import HandlerRecord, Replaying
from consensus.app import PreparedProposal, ProcessedProposal
from consensus.block import Block
from consensus.messages import CommitCertificate
from consensus.validators import ValidatorSet, ValidatorUpdate
from core.encoding import decode, encode_trusted
from core.hashing import sha256
from node.crashpoints import crash_point
from node.genesis import Genesis
from storage.chaindb import ChainDB, ChainSnapshot
from storage.txindex import TxIndexEntry

META_CHAIN_STATE = b"chain_state"
META_GENESIS_HASH = b"genesis_hash"
# One record per committed tx (raw bytes + result), so a `tx` lookup is one read instead of
# decoding its whole block and the block's results, as CometBFT's indexer does.
TX_RECORD_PREFIX = b"txr:"
MAX_CACHED_EXECUTIONS = 8


class AppFault(Exception):
    """An internal fault: a committed block this node cannot execute to the same app hash.
    The node must stop rather than go on with a state that differs from the network's."""


@dataclass(slots=True)
class CommittedBlock:
    block: Block
    certificate: CommitCertificate
    execution: vm.BlockExecution
    txs: list[vm.Tx]


def _result_list(r: vm.TxResult) -> list[Any]:
    # Event attributes are flat (name -> int, bytes or text): their (name, value) pairs are
    # stored in the VM's own deterministic order; `_result_dict` turns them back into a dict.
    return [r.hash, r.code, r.name, r.message, r.fee_charged, r.tx_type,
            [(e.kind, tuple(e.attributes.items())) for e in r.events]]


def _result_dict(item: list[Any]) -> dict[str, Any]:
    tx_hash, code, name, message, fee, tx_type, events = item
    return {"hash": tx_hash, "code": code, "name": name, "message": message,
            "fee_charged": fee, "tx_type": tx_type,
            "events": [{"kind": k, "attributes": dict(a)} for k, a in events]}


def decode_tx_record(data: bytes) -> tuple[bytes, dict[str, Any]]:
    raw, result = decode(data)
    return raw, _result_dict(result)


def tx_record_key(tx_hash: bytes) -> bytes:
    return TX_RECORD_PREFIX + tx_hash


def read_tx_record(chain: ChainDB | ChainSnapshot,
                   tx_hash: bytes) -> tuple[bytes, dict[str, Any]] | None:
    """(raw tx, result) of a committed tx, from its own record."""
    data = chain.get_meta(tx_record_key(tx_hash))
    return None if data is None else decode_tx_record(data)


def involved_addresses(tx: vm.Tx, result: vm.TxResult) -> list[bytes]:
    """The sender and every account an event of the tx names (merchant, buyer, recipient)."""
    found = [tx.sender_address]
    for event in result.events:
        for value in event.attributes.values():
            if isinstance(value, bytes) and len(value) == 20 and value not in found:
                found.append(value)
    return found


class CommerceApp:
    def __init__(self, db: ChainDB, genesis: Genesis,
                 known_tx: Callable[[bytes], vm.Tx | None] = lambda _h: None,
                 check_record: Callable[[bytes], HandlerRecord | None] = lambda _h: None):
        self.db = db
        self.genesis = genesis
        self.params = genesis.params
        self.known_tx = known_tx  # mempool lookup: reuse decoded, signature-checked txs
        self.check_record = check_record  # mempool lookup: reuse still-valid check runs
        self.reused_runs = 0  # handler runs taken from check records (metrics, tests)
        self._cache: dict[bytes, tuple[vm.BlockExecution, list[vm.Tx]]] = {}
        # block hash -> (its key in _cache, the body it was executed with)
        self._block_keys: dict[bytes, tuple[bytes, tuple, tuple]] = {}
        self.trees = vm.TreeCache()  # app-hash trees of the committed state and proposals

    # --- setup ---------------------------------------------------------------------------

    def ensure_genesis(self) -> None:
        """Write the genesis state into an empty database; check it matches otherwise."""
        genesis_hash = self.genesis.hash()
        stored = self.db.get_meta(META_GENESIS_HASH)
        if self.db.state_meta() is None:
            changes, app_hash = vm.genesis_changes(self.params)
            self.db.write_genesis_state(changes, app_hash, self.genesis.initial_height - 1)
            from storage.kv import WriteBatch

            batch = WriteBatch()
            self.db.put_meta(batch, META_GENESIS_HASH, genesis_hash)
            self.db.store.write(batch, sync=True)
        elif stored is not None and stored != genesis_hash:
            raise AppFault("the data directory belongs to another genesis (chain)")

    @property
    def state(self) -> vm.StateReader:
        return self.db.state

    def last_app_hash(self) -> bytes:
        meta = self.db.state_meta()
        return meta.app_hash if meta else vm.EMPTY_APP_HASH

    # --- execution -------------------------------------------------------------------------

    def _decode(self, raw: bytes, tx_hash: bytes) -> vm.Tx:
        known = self.known_tx(tx_hash)
        return known if known is not None else vm.decode_tx(raw, self.params.chain_id,
                                                           self.params.max_tx_size)

    @staticmethod
    def _key(block_height: int, time_ms: int, proposer: bytes, tx_hashes: Sequence[bytes],
             evidence: Sequence[bytes]) -> bytes:
        return sha256(encode_trusted([block_height, time_ms, proposer, list(tx_hashes),
                                      list(evidence)]))

    def _context(self, block: Block, validators_at: Callable[[int], ValidatorSet]) -> vm.BlockContext:
        misbehaving = []
        for ev in block.evidence:
            validators = validators_at(ev.height)
            pubkey = validators.validators[ev.validator_index].pubkey
            if pubkey not in misbehaving:
                misbehaving.append(pubkey)
        hd = block.header
        return vm.BlockContext(self.params.chain_id, hd.height, hd.time_ms,
                               hd.proposer_address, tuple(misbehaving))

    def _remember(self, key: bytes, execution: vm.BlockExecution, txs: list[vm.Tx]) -> None:
        if len(self._cache) >= MAX_CACHED_EXECUTIONS:
            self._cache.pop(next(iter(self._cache)))
        if len(self._block_keys) >= MAX_CACHED_EXECUTIONS:
            self._block_keys.pop(next(iter(self._block_keys)))
        self._cache[key] = (execution, txs)

    def prepare_proposal(self, template: Block, candidates: Sequence[vm.Tx],
                         validators_at: Callable[[int], ValidatorSet]) -> PreparedProposal:
        ctx = self._context(template, validators_at)
        replaying = Replaying(self.check_record)
        execution = vm.execute_block(self.state, self.params, ctx, candidates,
                                     drop_rejected=True, run=replaying, trees=self.trees)
        self.reused_runs += replaying.reused
        included = list(execution.included)
        execution.results = [r for r in execution.results if r.included]
        key = self._key(ctx.height, ctx.time, ctx.proposer, [t.hash for t in included],
                        [e.hash() for e in template.evidence])
        self._remember(key, execution, included)
        return PreparedProposal(tuple(t.raw for t in included), execution.app_hash)

    def _execute(self, block: Block, validators_at: Callable[[int], ValidatorSet]
                 ) -> tuple[bytes, vm.BlockExecution, list[vm.Tx]]:
        # A validator's commit meets the block its process_proposal executed: found by the
        # header hash, it is neither decoded nor hashed again. The engine checks that the
        # header's txs_root and evidence_hash match the body before either call; the body
        # is compared anyway, so a caller that did not cannot get another block's run.
        known = self._block_keys.get(block.hash)
        # (the same block object in practice: tuples of the same items compare by identity)
        if known is not None and known[1] == block.txs and known[2] == block.evidence:
            cached = self._cache.get(known[0])
            if cached is not None:
                return known[0], cached[0], cached[1]
        txs = [self._decode(raw, tx_hash)
               for raw, tx_hash in zip(block.txs, block.tx_hashes(), strict=True)]
        ctx = self._context(block, validators_at)
        key = self._key(ctx.height, ctx.time, ctx.proposer, [t.hash for t in txs],
                        [e.hash() for e in block.evidence])
        cached = self._cache.get(key)
        if cached is not None:
            return key, cached[0], cached[1]
        replaying = Replaying(self.check_record)
        execution = vm.execute_block(self.state, self.params, ctx, txs, drop_rejected=False,
                                     run=replaying, trees=self.trees)
        self.reused_runs += replaying.reused
        self._remember(key, execution, txs)
        self._block_keys[block.hash] = (key, block.txs, block.evidence)
        return key, execution, txs

    def process_proposal(self, block: Block,
                         validators_at: Callable[[int], ValidatorSet]) -> ProcessedProposal:
        try:
            _, execution, _ = self._execute(block, validators_at)
        except (vm.VMError, vm.BlockInvalid):
            return ProcessedProposal(False, b"")
        return ProcessedProposal(True, execution.app_hash)

    def commit(self, block: Block, certificate: CommitCertificate,
               validators_at: Callable[[int], ValidatorSet],
               next_chain_state: Callable[[tuple[ValidatorUpdate, ...]], bytes]) -> CommittedBlock:
        """Execute (or reuse) and durably store a decided block in one synced batch."""
        crash_point("app.before_commit")
        try:
            _, execution, txs = self._execute(block, validators_at)
        except (vm.VMError, vm.BlockInvalid) as exc:
            raise AppFault(f"committed block {block.height} is not executable: {exc}") from None
        if execution.app_hash != block.header.app_hash:
            raise AppFault(f"committed block {block.height} executes to another app hash: "
                           "this node's state differs from the network's")
        updates = tuple(ValidatorUpdate(pk, power) for pk, power in execution.validator_updates)
        # each tx's result is stored once, in its tx record (the block's results are those of
        # its txs); encode_trusted: the node built these values itself, no type walk needed
        result_lists = [_result_list(r) for r in execution.results]
        entries = [TxIndexEntry(tx.hash, i, r.code, tx.type, involved_addresses(tx, r))
                   for i, (tx, r) in enumerate(zip(txs, execution.results, strict=True))]
        self.db.commit(
            height=block.height, block_hash=block.hash, block_bytes=block.encode(),
            commit_bytes=certificate.encode(), state_changes=execution.changes,
            app_hash=execution.app_hash, tx_entries=entries,
            meta=[(META_CHAIN_STATE, next_chain_state(updates)),
                  *((tx_record_key(tx.hash), encode_trusted([tx.raw, r]))
                    for tx, r in zip(txs, result_lists, strict=True))],
        )
        self._cache.clear()
        self._block_keys.clear()
        return CommittedBlock(block, certificate, execution, txs)
