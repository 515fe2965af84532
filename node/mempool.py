"""The mempool: txs waiting for a block, each already checked against the state it will see.

Like CometBFT's check state, the pool keeps an Overlay of the last committed state with
every pooled tx applied in arrival order, so a tx is checked against what its sender's
earlier txs will have done (a `confirm` after its `buy`, a nonce after the previous one).
A tx whose execution would fail is refused at the door with the VM's code: a buyer hears
"insufficient_inventory" at submission, not from a failed tx in a block.

A tx whose nonce is ahead of the sender's next nonce is parked (bounded) until the gap
fills, so clients may submit a sender's txs over several connections. After each commit
the pool drops what was committed, re-checks the rest against the new state in order, and
drops txs older than the TTL. A re-check replays a tx's recorded check run where every
value it read is unchanged (commerce_vm.reuse), even a run at an earlier height (see
`update`), and runs the handler only where the block changed what it read.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import commerce_vm as vm
from commerce_vm import errors as vm_errors
from commerce_vm import query as vm_query
from commerce_vm.reuse import HandlerRecord, Recorder
from core.recent import RecentSet
from node.rpc.errors import MEMPOOL_FULL, TX_ALREADY_KNOWN

MAX_PARKED_PER_SENDER = 64
# Committed hashes refused by a set lookup (late gossip copies): the last 50,000 at least.
RECENTLY_COMMITTED = 100_000
FULL_RECHECK_EVERY = 10


@dataclass(frozen=True, slots=True)
class MempoolLimits:
    max_txs: int = 50_000
    max_bytes: int = 64 * 1024 * 1024
    max_tx_bytes: int = 64 * 1024
    max_txs_per_sender: int = 1000
    ttl_blocks: int = 600


class MempoolError(Exception):
    """A tx the pool refused. `code` is a VM error code or a node RPC code; `name` is short."""

    def __init__(self, code: int, name: str, message: str):
        super().__init__(message)
        self.code = code
        self.name = name
        self.message = message

    @classmethod
    def from_vm(cls, err: vm.VMError) -> MempoolError:
        return cls(err.code, err.name, err.message)


@dataclass(slots=True)
class _Entry:
    tx: vm.Tx
    added_height: int
    record: HandlerRecord | None = None  # its check run, for block execution to reuse


_ABSENT = object()


class _WritesOver:
    """The check state's writes over another reader (one dict.get: safe on any thread)."""

    __slots__ = ("writes", "base")

    def __init__(self, writes: dict[bytes, bytes | None], base: vm.StateReader):
        self.writes, self.base = writes, base

    def get(self, key: bytes) -> bytes | None:
        value = self.writes.get(key, _ABSENT)
        return self.base.get(key) if value is _ABSENT else value  # type: ignore[return-value]


class Mempool:
    def __init__(self, params: vm.GenesisParams, state: vm.StateReader, height: int,
                 block_time: int, limits: MempoolLimits = MempoolLimits()):
        self.params = params
        self.limits = limits
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self._per_sender: dict[bytes, int] = {}
        self._parked: dict[bytes, dict[int, _Entry]] = {}
        self._parked_hashes: set[bytes] = set()
        self._bytes = 0
        self._recent = RecentSet(RECENTLY_COMMITTED)
        self._blocks_since_recheck = 0
        self._reset_check_state(state, height, block_time)

    # --- queries ------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, tx_hash: bytes) -> bool:
        """Pooled or parked."""
        return tx_hash in self._entries or tx_hash in self._parked_hashes

    def knows(self, tx_hash: bytes) -> bool:
        """Pooled, parked or recently committed: `add` would refuse it as already known.
        Checked by hash before any decoding or signature check, so the copies of a tx that
        gossip brings from several peers cost a set lookup each."""
        return tx_hash in self._entries or tx_hash in self._parked_hashes \
            or tx_hash in self._recent

    def refuse_known(self, tx_hash: bytes) -> None:
        if self.knows(tx_hash):
            raise MempoolError(TX_ALREADY_KNOWN, "tx_already_known", "tx is already known")

    def is_parked(self, tx_hash: bytes) -> bool:
        """Waiting for an earlier nonce of its sender: not in a block until the gap fills."""
        return tx_hash in self._parked_hashes

    def get(self, tx_hash: bytes) -> vm.Tx | None:
        entry = self._entries.get(tx_hash)
        return None if entry is None else entry.tx

    def record(self, tx_hash: bytes) -> HandlerRecord | None:
        """The handler run of the tx's check, which block execution may reuse where its
        reads still hold (commerce_vm.reuse)."""
        entry = self._entries.get(tx_hash)
        return None if entry is None else entry.record

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def txs(self, limit: int | None = None) -> list[vm.Tx]:
        out = []
        for entry in self._entries.values():
            if limit is not None and len(out) >= limit:
                break
            out.append(entry.tx)
        return out

    def reap(self, max_txs: int, max_bytes: int) -> list[vm.Tx]:
        """Txs for a proposal, in arrival order (which keeps each sender's nonce order)."""
        picked: list[vm.Tx] = []
        size = 0
        for entry in self._entries.values():
            if len(picked) >= max_txs or size + len(entry.tx.raw) > max_bytes:
                break
            picked.append(entry.tx)
            size += len(entry.tx.raw)
        return picked

    def next_nonce(self, address: bytes, committed: vm.StateReader | None = None) -> int:
        """The nonce the sender's next tx needs: committed nonce plus its pooled txs.

        With `committed` (the RPC thread's snapshot) the pool's writes are read over it
        instead of over the live state, whose cache only the loop may fill. Read from
        another thread it may miss a tx the loop admits at that moment."""
        if committed is None:
            return vm_query.nonce(self._check, address)
        return vm_query.nonce(_WritesOver(self._check.writes, committed), address)

    # --- admission ----------------------------------------------------------------------

    def decode(self, raw: bytes, signature_verified: bool = False) -> vm.Tx:
        """Stateless checks (the signature is verified once and cached on the Tx; not at all
        when the caller verified these bytes' signature: see node.verifier)."""
        if len(raw) > self.limits.max_tx_bytes:
            raise MempoolError(vm_errors.TX_TOO_LARGE.code, vm_errors.TX_TOO_LARGE.name,
                               f"tx of {len(raw)} bytes exceeds the mempool limit "
                               f"of {self.limits.max_tx_bytes}")
        try:
            return vm.validate_tx(raw, self.params, signature_verified)
        except vm.VMError as err:
            raise MempoolError.from_vm(err) from None

    def add(self, tx: vm.Tx) -> list[vm.Tx]:
        """Admit a stateless-valid tx. Returns the txs that entered the pool (the tx itself,
        plus parked txs of its sender that it unblocked); [] when the tx was parked."""
        self.refuse_known(tx.hash)
        self._check_room(tx)
        expected = vm_query.nonce(self._check, tx.sender_address)
        if tx.nonce > expected:
            self._park(tx, expected)
            return []
        self._admit(tx)
        added = [tx]
        added += self._promote(tx.sender_address)
        return added

    def _check_room(self, tx: vm.Tx) -> None:
        if len(self._entries) >= self.limits.max_txs or \
                self._bytes + len(tx.raw) > self.limits.max_bytes:
            if not self._evict_for(tx):
                raise MempoolError(MEMPOOL_FULL, "mempool_full",
                                   f"mempool is full ({len(self._entries)} txs, "
                                   f"{self._bytes} bytes)")
        if self._per_sender.get(tx.sender_address, 0) >= self.limits.max_txs_per_sender:
            raise MempoolError(MEMPOOL_FULL, "sender_limit",
                               f"sender already has {self.limits.max_txs_per_sender} txs waiting")

    def _try(self, tx: vm.Tx, previous: HandlerRecord | None = None, *,
             at_any_height: bool = False) -> tuple[vm.TxResult, HandlerRecord | None]:
        """Run `tx` on the check state; keep its writes only if it succeeds. A child overlay
        means a failing tx costs one execution, never a rebuild of the whole check state.
        `previous`: the record of an earlier check of `tx`, replayed where it still holds
        (commerce_vm.reuse: the same result and writes as running it again), at any
        height if `at_any_height` (the light re-check, see `update`)."""
        child = vm.Overlay(self._check)
        recorder = Recorder(previous, at_any_height=at_any_height)
        result = vm.apply_tx(child, self.params, self._ctx, tx, recorder)
        if result.code == vm_errors.OK:
            child.commit_into_parent()
        return result, recorder.record

    def _admit(self, tx: vm.Tx) -> None:
        result, record = self._try(tx)
        if result.code != vm_errors.OK:
            # Included-as-failed would charge a fee for nothing: refuse it at the door.
            raise MempoolError(result.code, result.name, result.message)
        self._count_in(_Entry(tx, self._height, record))

    def _count_in(self, entry: _Entry) -> None:
        tx = entry.tx
        self._entries[tx.hash] = entry
        self._per_sender[tx.sender_address] = self._per_sender.get(tx.sender_address, 0) + 1
        self._bytes += len(tx.raw)

    def _park(self, tx: vm.Tx, expected: int) -> None:
        parked = self._parked.setdefault(tx.sender_address, {})
        if tx.nonce in parked or len(parked) >= MAX_PARKED_PER_SENDER or \
                tx.nonce - expected > MAX_PARKED_PER_SENDER:
            if not parked:
                del self._parked[tx.sender_address]
            err = vm_errors.BAD_NONCE
            raise MempoolError(err.code, err.name,
                               f"nonce {tx.nonce} is too far ahead of the next nonce {expected}")
        parked[tx.nonce] = _Entry(tx, self._height)
        self._parked_hashes.add(tx.hash)

    def _promote(self, sender: bytes) -> list[vm.Tx]:
        parked = self._parked.get(sender)
        promoted: list[vm.Tx] = []
        while parked:
            expected = vm_query.nonce(self._check, sender)
            entry = parked.pop(expected, None)
            if entry is None:
                break
            try:
                self._check_room(entry.tx)
            except MempoolError:
                parked[expected] = entry  # acknowledged to its sender: wait for room
                break
            self._parked_hashes.discard(entry.tx.hash)
            try:
                self._admit(entry.tx)
            except MempoolError:
                break  # no longer valid on the new state: dropped
            promoted.append(entry.tx)
        if parked is not None and not parked:
            self._parked.pop(sender, None)
        return promoted

    def _evict_for(self, tx: vm.Tx) -> bool:
        """Make room for a better-paying tx by dropping the newest tx of the lowest fee.
        Only the last tx of a sender can go without breaking that sender's nonce chain."""
        lowest: _Entry | None = None
        last_of_sender: dict[bytes, _Entry] = {}
        for entry in self._entries.values():
            last_of_sender[entry.tx.sender_address] = entry
        for entry in last_of_sender.values():
            if lowest is None or entry.tx.fee < lowest.tx.fee:
                lowest = entry
        if lowest is None or lowest.tx.fee >= tx.fee:
            return False
        self._remove(lowest.tx)
        self._rebuild_check_state()
        return True

    def _remove(self, tx: vm.Tx) -> None:
        if self._entries.pop(tx.hash, None) is None:
            return
        self._bytes -= len(tx.raw)
        left = self._per_sender[tx.sender_address] - 1
        if left:
            self._per_sender[tx.sender_address] = left
        else:
            del self._per_sender[tx.sender_address]

    # --- after a commit -----------------------------------------------------------------

    def update(self, state: vm.StateReader, height: int, block_time: int,
               committed: list[bytes], *, only_txs_changed_state: bool = False) -> list[vm.Tx]:
        """The block at `height` committed these tx hashes on top of `state`. Drops them,
        re-checks the rest in order, expires old txs. Returns the txs dropped on re-check.

        Re-executing every waiting tx after every block costs (pool depth / block size)
        executions per tx. When the block changed state only through its txs
        (`only_txs_changed_state`: no expirations, no validator changes) and ran exactly the
        pool's first txs in the pool's order (the proposer's own block; another's when the
        orders agree), the check state already holds their effects: it is rebased onto the
        new committed state instead. The check state only decides admission (every
        block is executed for real), and a full re-check every FULL_RECHECK_EVERY blocks
        bounds any drift and applies the TTL.

        Any other block gets a light re-check: a record whose reads all hold is replayed
        even though it was made at an earlier height (commerce_vm.reuse.Recorder), so only
        the txs whose reads the block changed run again. The height stamps those replays
        leave in the check state may lag by up to FULL_RECHECK_EVERY blocks, as after a
        rebase; what that can change is confined to orders that pooled txs made or shipped:
        their deadlines look that much earlier, so a ship or dispute of such an order in
        its last blocks may be refused by the pool, and a tx that would have lost to it
        (the buyer's cancel of that order) kept. Blocks compare the height, so none of this
        reaches a block: it runs such txs for real. Every FULL_RECHECK_EVERY-th block the
        re-check is exact and re-runs every such tx (tests/test_mempool_light_recheck.py
        compares the two).
        """
        exact_due = self._blocks_since_recheck >= FULL_RECHECK_EVERY
        rebase = only_txs_changed_state and not exact_due and self._is_pool_prefix(committed)
        self._blocks_since_recheck = 0 if exact_due else self._blocks_since_recheck + 1
        for tx_hash in committed:
            entry = self._entries.get(tx_hash)
            if entry is not None:
                self._remove(entry.tx)
            self._recent.add(tx_hash)
        if rebase:
            writes = self._check.writes
            self._reset_check_state(state, height, block_time)
            self._check.writes = writes
            return []
        self._reset_check_state(state, height, block_time)
        return self._recheck(at_any_height=not exact_due)

    def _is_pool_prefix(self, committed: list[bytes]) -> bool:
        """Whether the block ran exactly the pool's first txs, in the pool's order. Only then
        does the check state hold what the block did: run in another order, txs that draw
        from a counter (order and listing ids) or share state get other results, and a
        check state built in the pool's order would refuse, say, the merchant's ship of an
        order the block numbered differently."""
        if len(committed) > len(self._entries):
            return False
        return all(h == pooled for h, pooled in zip(committed, self._entries, strict=False))

    def _reset_check_state(self, state: vm.StateReader, height: int, block_time: int) -> None:
        self._state = state
        self._height = height
        self._block_time = block_time
        self._ctx = vm.BlockContext(self.params.chain_id, height + 1, block_time, b"")
        self._check = vm.Overlay(state)

    def _rebuild_check_state(self) -> None:
        self._check = vm.Overlay(self._state)
        self._recheck()

    def _recheck(self, *, at_any_height: bool = False) -> list[vm.Tx]:
        entries = list(self._entries.values())
        self._entries.clear()
        self._per_sender.clear()
        self._bytes = 0
        dropped: list[vm.Tx] = []
        for entry in entries:
            expired = self._height - entry.added_height >= self.limits.ttl_blocks
            result, entry.record = (None, None) if expired else \
                self._try(entry.tx, entry.record, at_any_height=at_any_height)
            if result is None or result.code != vm_errors.OK:
                dropped.append(entry.tx)
            else:
                self._count_in(entry)
        for sender in list(self._parked):
            self._drop_stale_parked(sender)
            self._promote(sender)
        return dropped

    def _drop_stale_parked(self, sender: bytes) -> None:
        parked = self._parked.get(sender, {})
        expected = vm_query.nonce(self._check, sender)
        for nonce in [n for n in parked if n < expected
                      or self._height - parked[n].added_height >= self.limits.ttl_blocks]:
            self._parked_hashes.discard(parked.pop(nonce).tx.hash)
        if not parked:
            self._parked.pop(sender, None)
