"""The consensus <-> application boundary, in the spirit of ABCI.

The engine never calls the application: it emits BuildProposal / ProcessProposal / Commit
actions and the driver (the node, or the simulator) calls these methods and feeds the
answers back as ProposalBuilt / ProposalProcessed / BlockFinalized events. The node's
commerce_vm adapter implements this protocol; consensus never imports commerce_vm.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from consensus.block import Block
from consensus.validators import ValidatorUpdate


@dataclass(frozen=True, slots=True)
class CheckTxResult:
    ok: bool
    code: str = "ok"  # a stable error code when not ok


@dataclass(frozen=True, slots=True)
class PreparedProposal:
    """The txs the proposer puts in its block and the state hash after executing them."""

    txs: tuple[bytes, ...]
    app_hash: bytes


@dataclass(frozen=True, slots=True)
class ProcessedProposal:
    """`valid` is False when the block breaks an application rule; app_hash is the state
    hash after executing the block on top of the last committed state."""

    valid: bool
    app_hash: bytes


@dataclass(frozen=True, slots=True)
class FinalizedBlock:
    app_hash: bytes
    validator_updates: tuple[ValidatorUpdate, ...] = ()


@runtime_checkable
class Application(Protocol):
    def check_tx(self, tx: bytes) -> CheckTxResult:
        """Stateless + stateful admission check for the mempool."""
        ...

    def prepare_proposal(self, template: Block, candidate_txs: Sequence[bytes]) -> PreparedProposal:
        """Pick txs for `template` (a block with everything but txs and app_hash: height,
        BFT time, proposer, evidence) and execute them speculatively; state is unchanged."""
        ...

    def process_proposal(self, block: Block) -> ProcessedProposal:
        """Validate and execute `block` speculatively on top of the last committed state.
        Must be deterministic: every honest validator returns the same answer."""
        ...

    def finalize_block(self, block: Block) -> FinalizedBlock:
        """Apply a committed block (its evidence included); return validator updates, which
        the engine puts in force two heights later."""
        ...

    def commit(self) -> None:
        """Make the finalized state durable (the node does it in the block's write batch)."""
        ...
