"""Throughput of two Networks over loopback, in two processes (not a test).

    .venv/bin/python -m p2p.bench [message_bytes] [seconds]

The sender queues 250-byte messages as fast as the send queue allows; the receiver counts
them. Prints messages/s and MB/s of payload. Rate limits are raised so they do not cap it.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import sys
import time

from core.keys import PrivateKey
from p2p import Channel, Network, NetworkConfig, format_peer_address

CHAIN = "bench"
UNLIMITED = dict(recv_bytes_per_second=0, recv_messages_per_second=0,
                 send_queue_bytes=64 << 20)


def _use_uvloop() -> str:
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


class _Counter:
    def __init__(self) -> None:
        self.count = 0
        self.connected = asyncio.Event()

    def on_peer_connected(self, peer_id: bytes) -> None:
        self.connected.set()

    def on_peer_disconnected(self, peer_id: bytes) -> None:
        pass

    def on_message(self, peer_id: bytes, channel: int, payload: bytes) -> None:
        self.count += 1


def _receiver(port_queue, result_queue, seconds: float) -> None:
    _use_uvloop()

    async def main() -> None:
        counter = _Counter()
        net = Network(PrivateKey(b"\x01" * 32), CHAIN, NetworkConfig("127.0.0.1:0", **UNLIMITED),
                      counter)
        await net.start()
        port_queue.put(net.listen_port)
        await counter.connected.wait()
        await asyncio.sleep(0.5)  # warm-up
        start_count, start = counter.count, time.perf_counter()
        await asyncio.sleep(seconds)
        result_queue.put((counter.count - start_count, time.perf_counter() - start))
        await net.stop()

    asyncio.run(main())


def main() -> None:
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 250
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 5.0
    ports, results = multiprocessing.Queue(), multiprocessing.Queue()
    proc = multiprocessing.Process(target=_receiver, args=(ports, results, seconds))
    proc.start()
    port = ports.get()
    loop_name = _use_uvloop()

    async def sender() -> None:
        counter = _Counter()
        receiver_key = PrivateKey(b"\x01" * 32)
        from p2p.ids import node_id_of
        rid = node_id_of(receiver_key.public_key)
        net = Network(PrivateKey(b"\x02" * 32), CHAIN, NetworkConfig(
            "127.0.0.1:0", persistent_peers=(format_peer_address(rid, "127.0.0.1", port),),
            **UNLIMITED), counter)
        await net.start()
        await counter.connected.wait()
        payload = bytes(size)
        peer = net._peers[rid]
        while proc.is_alive() and results.empty():
            # keep ~4 MiB queued: the writer always has a full frame to seal
            while peer.outbox.queued_bytes < (4 << 20):
                net.send(rid, Channel.TXS, payload)
            await asyncio.sleep(0)
        await net.stop()

    asyncio.run(sender())
    count, elapsed = results.get()
    proc.join()
    rate = count / elapsed
    print(f"{loop_name}: {size}-byte messages, two processes over loopback: "
          f"{rate:,.0f} messages/s, {rate * size / 1e6:,.1f} MB/s of payload")


if __name__ == "__main__":
    main()
