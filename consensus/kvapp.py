"""A tiny deterministic key-value application, for the simulator and tests.

Txs: `set:<key>=<value>` stores a value; `val:<pubkey hex>:<power>` changes a validator's
power (0 removes it). The app hash is the hash of the whole state (small by design) and the
height, so any divergence shows up in the next header. Evidence is recorded in the state.
"""

from __future__ import annotations

from collections.abc import Sequence

from consensus.app import CheckTxResult, FinalizedBlock, PreparedProposal, ProcessedProposal
from consensus.block import Block
from consensus.validators import ValidatorUpdate
from core.encoding import decode, encode
from core.hashing import sha256

MAX_TX = 256


def parse_tx(tx: bytes) -> tuple[bytes, bytes] | ValidatorUpdate | None:
    if not isinstance(tx, bytes) or len(tx) > MAX_TX:
        return None
    if tx.startswith(b"set:") and b"=" in tx:
        key, _, value = tx[4:].partition(b"=")
        return (key, value) if key else None
    if tx.startswith(b"val:"):
        parts = tx[4:].split(b":")
        if len(parts) != 2 or not parts[1].isdigit() or len(parts[1]) > 12:
            return None
        try:
            pubkey = bytes.fromhex(parts[0].decode("ascii"))
        except ValueError:
            return None
        return ValidatorUpdate(pubkey, int(parts[1])) if len(pubkey) == 32 else None
    return None


class KVApp:
    """Implements consensus.app.Application."""

    def __init__(self) -> None:
        self.height = 0
        self.state: dict[bytes, bytes] = {}
        self._results: dict[bytes, tuple[dict[bytes, bytes], tuple[ValidatorUpdate, ...],
                                          bytes]] = {}

    @staticmethod
    def state_hash(height: int, state: dict[bytes, bytes]) -> bytes:
        return sha256(encode([height, [[k, state[k]] for k in sorted(state)]]))

    @property
    def app_hash(self) -> bytes:
        return self.state_hash(self.height, self.state)

    def check_tx(self, tx: bytes) -> CheckTxResult:
        return CheckTxResult(True) if parse_tx(tx) is not None else CheckTxResult(False, "bad_tx")

    def _execute(self, height: int, txs: Sequence[bytes], evidence_hashes: Sequence[bytes]):
        state = dict(self.state)
        updates: dict[bytes, ValidatorUpdate] = {}
        for tx in txs:
            parsed = parse_tx(tx)
            if parsed is None:
                return None
            if isinstance(parsed, ValidatorUpdate):
                updates[parsed.pubkey] = parsed  # the last update of a validator wins
            else:
                state[parsed[0]] = parsed[1]
        for h in evidence_hashes:
            state[b"evidence:" + h] = b"%d" % height
        ordered = tuple(updates[k] for k in sorted(updates))
        return state, ordered, self.state_hash(height, state)

    def prepare_proposal(self, template: Block, candidate_txs: Sequence[bytes]) -> PreparedProposal:
        txs = tuple(tx for tx in candidate_txs if parse_tx(tx) is not None)
        result = self._execute(template.height, txs, [e.hash() for e in template.evidence])
        assert result is not None
        return PreparedProposal(txs, result[2])

    def process_proposal(self, block: Block) -> ProcessedProposal:
        if block.height != self.height + 1:
            return ProcessedProposal(False, b"")
        result = self._execute(block.height, block.txs, [e.hash() for e in block.evidence])
        if result is None:
            return ProcessedProposal(False, b"")
        self._results[block.hash] = result
        return ProcessedProposal(True, result[2])

    def finalize_block(self, block: Block) -> FinalizedBlock:
        result = self._results.get(block.hash) or self._execute(
            block.height, block.txs, [e.hash() for e in block.evidence])
        if result is None:
            raise ValueError("a committed block must be executable")
        self.state, updates, app_hash = result
        self.height = block.height
        self._results.clear()
        return FinalizedBlock(app_hash, updates)

    def commit(self) -> None:
        pass  # in-memory: the driver snapshots with snapshot()

    def snapshot(self) -> bytes:
        return encode([self.height, [[k, self.state[k]] for k in sorted(self.state)]])

    @classmethod
    def restore(cls, data: bytes) -> KVApp:
        app = cls()
        height, items = decode(data)
        app.height = height
        app.state = {k: v for k, v in items}
        return app
