"""A signature-verify worker: a process of its own, started by node.verifier.

`python -m node.verify_worker MAX_TX_SIZE` reads requests from stdin and answers each on
stdout, in order. A request is a 4-byte big-endian length and a msgpack array of raw txs;
its answer is a 4-byte length and one byte per tx: 1 when its signature verifies, 0
otherwise. The node decodes every tx in full again and runs every other check on its loop,
so the worker reads only what was signed, by whom, and the signature.

A process, not a thread of the node: a verify thread must take the GIL back after every
signature, and each of those hand-offs stopped the loop (see docs/performance.md). The
worker runs at a lower priority, so on a busy machine the loop, which sets the node's pace,
gets its core first. It exits when stdin closes, which is also what happens when the node
dies.
"""

from __future__ import annotations

import os
import sys
from typing import BinaryIO

import msgpack

from commerce_vm.tx import SIGNATURE_TAIL, signed_message_of
from core.keys import DOMAIN_TX, signing_payload, verify_raw

NICENESS = 10
HEADER = 4


def signature_ok(raw: bytes, max_tx_size: int) -> bool:
    """What `verify_tx_signature` answers for the Tx that `decode_tx` makes of `raw`, for
    every raw that `decode_tx` accepts, without the rest of decoding (a tenth of the cost).
    A raw it refuses is refused on the loop whatever its flag, so the flag of a raw that is
    not a canonical tx does not matter."""
    if not SIGNATURE_TAIL < len(raw) <= max_tx_size:
        return False
    items = msgpack.unpackb(raw, max_map_len=0, max_ext_len=0)
    if type(items) is not list or len(items) != 7:
        return False
    chain_id, sender, signature = items[0], items[2], items[6]
    if type(chain_id) is not str or type(sender) is not bytes or type(signature) is not bytes:
        return False
    return verify_raw(sender, signing_payload(DOMAIN_TX, chain_id, signed_message_of(raw)),
                      signature)


def signature_flags(raws: list[bytes], max_tx_size: int) -> bytes:
    flags = bytearray(len(raws))
    for i, raw in enumerate(raws):
        try:
            flags[i] = signature_ok(raw, max_tx_size)
        except Exception:  # noqa: BLE001 - a 0: the node meets the tx again and refuses it
            pass
    return bytes(flags)


def serve(source: BinaryIO, sink: BinaryIO, max_tx_size: int) -> None:
    while True:
        header = source.read(HEADER)
        if len(header) < HEADER:
            return  # the node closed the pipe (or died)
        payload = source.read(int.from_bytes(header, "big"))
        raws = msgpack.unpackb(payload)
        if not isinstance(raws, list) or not all(isinstance(r, bytes) for r in raws):
            raws = []  # only the node writes here; an empty answer makes it stop using us
        flags = signature_flags(raws, max_tx_size)
        sink.write(len(flags).to_bytes(HEADER, "big") + flags)
        sink.flush()


def main(argv: list[str]) -> int:
    max_tx_size = int(argv[0])
    try:
        os.nice(NICENESS)
    except (AttributeError, OSError):
        pass
    try:
        serve(sys.stdin.buffer, sys.stdout.buffer, max_tx_size)
    except (BrokenPipeError, KeyboardInterrupt):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
