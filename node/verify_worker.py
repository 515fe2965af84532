"""A signature-verify worker: a process of its own, started by node.verifier.

`python -m node.verify_worker CHAIN_ID MAX_TX_SIZE` reads requests from stdin and answers
each on stdout, in order. A request is a 4-byte big-endian length and a msgpack array of
raw txs; its answer is a 4-byte length and one byte per tx: 1 when the tx decodes for this
chain and its signature verifies, 0 otherwise. It decodes only to find what was signed; the
node decodes again and runs every other check on its loop.

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

from commerce_vm.tx import decode_tx, verify_tx_signature

NICENESS = 10
HEADER = 4


def signature_flags(raws: list[bytes], chain_id: str, max_tx_size: int) -> bytes:
    flags = bytearray(len(raws))
    for i, raw in enumerate(raws):
        try:
            flags[i] = verify_tx_signature(decode_tx(raw, chain_id, max_tx_size))
        except Exception:  # noqa: BLE001 - a 0: the node meets the tx again and refuses it
            pass
    return bytes(flags)


def serve(source: BinaryIO, sink: BinaryIO, chain_id: str, max_tx_size: int) -> None:
    while True:
        header = source.read(HEADER)
        if len(header) < HEADER:
            return  # the node closed the pipe (or died)
        payload = source.read(int.from_bytes(header, "big"))
        raws = msgpack.unpackb(payload)
        if not isinstance(raws, list) or not all(isinstance(r, bytes) for r in raws):
            raws = []  # only the node writes here; an empty answer makes it stop using us
        flags = signature_flags(raws, chain_id, max_tx_size)
        sink.write(len(flags).to_bytes(HEADER, "big") + flags)
        sink.flush()


def main(argv: list[str]) -> int:
    chain_id, max_tx_size = argv[0], int(argv[1])
    try:
        os.nice(NICENESS)
    except (AttributeError, OSError):
        pass
    try:
        serve(sys.stdin.buffer, sys.stdout.buffer, chain_id, max_tx_size)
    except (BrokenPipeError, KeyboardInterrupt):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
