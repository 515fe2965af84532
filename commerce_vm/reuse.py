"""Re-using a tx's handler run from an earlier execution (the mempool check) in a block,
and in the mempool's re-check after a block.

A handler is a pure function of the tx, the params, the context fields it reads and the
state values it reads: run it again where all of those are the same and it writes the same
values and returns the same result. `Recorder` runs a handler while noting the first value
of every key it reads (before its own writes) and every context field it reads, and keeps
that with its writes and result as a `HandlerRecord`. `Replaying` is a handler runner for
execute_block: for a tx with a record whose every read key and context field holds the same
value in the block, at the point where the tx runs, it applies the recorded writes and
returns the recorded result; any other tx runs for real. The block's outcome is therefore
the same with or without records; a record only saves the handler's work. Given a tx's
earlier record, `Recorder` replays it the same way where it holds (else records anew).

A handler that scans a key range (`iterate`) reads more than its keys: no record is kept.
The fee and nonce part of a tx always runs for real (it is cheap, and every tx writes the
rewards pool, which would otherwise make every record depend on every earlier tx).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import fields
from typing import Any, NamedTuple

from .context import BlockContext, TxResult
from .execute import handle_in, run_handler
from .params import GenesisParams
from .state import Overlay, StateReader
from .tx import Tx


class HandlerRecord(NamedTuple):
    # A NamedTuple, not a frozen dataclass: as immutable, and made in a third of the time
    # (one or two a tx on every node: its mempool check, and re-checks where reads changed)
    params: GenesisParams
    reads: tuple[tuple[bytes, bytes | None], ...]  # (key, value first read), in read order
    context: tuple[tuple[str, Any], ...]  # (field, value) of the context fields read
    writes: tuple[tuple[bytes, bytes | None], ...]  # what the handler wrote (none if failed)
    result: TxResult

    def holds_in(self, block: Overlay, params: GenesisParams, ctx: BlockContext, *,
                 at_any_height: bool = False) -> bool:
        """Whether running the handler here would do what the record says. With
        `at_any_height`, a height other than the recorded one is passed over: the writes
        then carry the recorded height's stamps (only the mempool asks this, see
        `Recorder`)."""
        if params is not self.params:
            return False
        if any(getattr(ctx, name) != value for name, value in self.context
               if not (at_any_height and name == "height")):
            return False
        get = block.get
        return all(get(key) == value for key, value in self.reads)


class _RecordingOverlay(Overlay):
    __slots__ = ("reads", "ranged")

    def __init__(self, base: StateReader):
        super().__init__(base)
        self.reads: dict[bytes, bytes | None] = {}
        self.ranged = False

    def get(self, key: bytes) -> bytes | None:
        writes = self.writes
        if key in writes:
            return writes[key]
        value = self.base.get(key)
        self.reads.setdefault(key, value)
        return value

    def iterate(self, prefix: bytes, start: bytes | None = None,
                reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        self.ranged = True
        return super().iterate(prefix, start, reverse)


class _RecordingContext:
    """Reads through to a BlockContext, noting each field read (one property per field:
    handlers read the height dozens of times, and a __getattr__ fallback costs far more)."""

    __slots__ = ("_ctx", "used")

    def __init__(self, ctx: BlockContext):
        self._ctx = ctx
        self.used: dict[str, Any] = {}


def _recording_field(name: str) -> property:
    def read(self: _RecordingContext) -> Any:
        value = getattr(self._ctx, name)
        self.used[name] = value
        return value
    return property(read)


for _field in fields(BlockContext):
    setattr(_RecordingContext, _field.name, _recording_field(_field.name))


class Recorder:
    """A handler runner that also keeps a record of the (last) handler it ran. Given the
    record of an earlier run of the same tx (`previous`), it replays that where it still
    holds and keeps it as the record: the mempool's re-check after a block runs again only
    the txs whose reads the block changed.

    `at_any_height` replays a record made at another height as well (its height stamps
    stay those of its run). The mempool's re-check moves to a new height after every
    block, which made every handler that reads the height (buy, ship, confirm, review,
    list) run again at every re-check although what it decides was unchanged: its height
    comparisons (late shipping, late disputes) are settled by the expiry that changes the
    order those handlers read, so a changed verdict shows as a changed read. Only the
    pool's check state is approximated this way, never a block: `Replaying` compares
    the height, so such a record does not hold in a block of another height, and the
    tx runs for real there."""

    __slots__ = ("record", "previous", "at_any_height")

    def __init__(self, previous: HandlerRecord | None = None, *,
                 at_any_height: bool = False) -> None:
        self.record: HandlerRecord | None = None
        self.previous = previous
        self.at_any_height = at_any_height

    def __call__(self, block: Overlay, params: GenesisParams, ctx: BlockContext,
                 tx: Tx) -> TxResult:
        previous = self.previous
        if previous is not None and previous.holds_in(block, params, ctx,
                                                      at_any_height=self.at_any_height):
            self.record = previous
            return _replay(previous, block)
        child = _RecordingOverlay(block)
        recording_ctx = _RecordingContext(ctx)
        result = handle_in(child, params, recording_ctx, tx)
        self.record = None if child.ranged else HandlerRecord(
            params, tuple(child.reads.items()), tuple(recording_ctx.used.items()),
            tuple(child.writes.items()) if result.code == 0 else (), result)
        return result


def _replay(record: HandlerRecord, block: Overlay) -> TxResult:
    """What running the handler again would do: its writes, and a fresh copy of its result."""
    block.writes.update(record.writes)
    result = record.result
    return TxResult(result.hash, result.code, result.name, result.message, result.included,
                    result.fee_charged, result.tx_type, list(result.events))


class Replaying:
    """A handler runner that applies still-valid records (`lookup` by tx hash)."""

    __slots__ = ("lookup", "reused")

    def __init__(self, lookup: Callable[[bytes], HandlerRecord | None]):
        self.lookup = lookup
        self.reused = 0

    def __call__(self, block: Overlay, params: GenesisParams, ctx: BlockContext,
                 tx: Tx) -> TxResult:
        record = self.lookup(tx.hash)
        if record is None or not record.holds_in(block, params, ctx):
            return run_handler(block, params, ctx, tx)
        self.reused += 1
        return _replay(record, block)
