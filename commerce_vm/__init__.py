"""commerce_vm: the deterministic commerce state machine.

Public API (other packages import from here):
- txs:      decode_tx, check_stateless, verify_tx_signature, validate_tx, sign_tx, Tx
- blocks:   execute_block, check_tx, apply_tx, BlockContext, BlockExecution, TxResult, Event
- state:    StateReader, MemoryState, Overlay, genesis_changes, genesis_state
- app hash: app_hash_of, prove, recompute_app_hash, verify_state_proof (proof.py: core only),
            TreeCache (recent states' inner trees in memory, for execute_block)
- params:   GenesisParams, ParamsError
- errors:   VMError, BlockInvalid, ErrorKind, ALL_ERRORS, BY_CODE
- queries:  commerce_vm.query
- reuse:    commerce_vm.reuse (Recorder / Replaying: a block applies a mempool check run's
            writes where everything it read still holds; the block is the same either way)
No I/O, no clock, no randomness, no floats.

Signature caching: verify_tx_signature stores its result in `Tx.sig_valid`; execute_block
only verifies txs whose sig_valid is None, so a node that already verified a tx hash (e.g. in
its mempool or its verify workers) may set `tx.sig_valid = True` on the decoded Tx it passes
in (`validate_tx(..., signature_verified=True)`).
"""

from .apphash import TreeCache, app_hash_of, prove, recompute_app_hash
from .context import BlockContext, BlockExecution, Event, TxResult
from .errors import ALL_ERRORS, BY_CODE, BlockInvalid, ErrorKind, VMError
from .execute import apply_tx, check_tx, execute_block
from .genesis import genesis_changes, genesis_state
from .params import GenesisParams, ParamsError
from .proof import EMPTY_APP_HASH, verify_state_proof
from .state import MemoryState, Overlay, StateReader
from .tx import Tx, check_stateless, decode_tx, sign_tx, validate_tx, verify_tx_signature

__all__ = [
    "ALL_ERRORS", "BY_CODE", "EMPTY_APP_HASH", "BlockContext", "BlockExecution", "BlockInvalid",
    "ErrorKind", "Event", "GenesisParams", "MemoryState", "Overlay", "ParamsError",
    "StateReader", "TreeCache", "Tx", "TxResult", "VMError", "app_hash_of", "apply_tx", "check_stateless",
    "check_tx", "decode_tx", "execute_block", "genesis_changes", "genesis_state", "prove",
    "recompute_app_hash", "sign_tx", "validate_tx", "verify_state_proof",
    "verify_tx_signature",
]
