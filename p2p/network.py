"""The asyncio transport: listening, dialling, per-peer reader/writer tasks, PEX, bans.

Protocol logic lives in the sans-IO modules (handshake, session, pex); this module moves
bytes between them and asyncio streams and keeps the peer table. Everything runs on one
event loop thread; the checks that admit a peer and its registration happen with no await
in between, so the peer table never races.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Coroutine
from typing import Any

from core.keys import PrivateKey, validate_chain_id
from p2p.addrbook import AddressBook
from p2p.config import NODE_CHANNELS, Channel, MessageHandler, NetworkConfig, PeerInfo
from p2p.errors import FrameError, HandshakeError, P2PError
from p2p.handshake import Handshake, HandshakeResult
from p2p.ids import format_host_port, node_id_of, parse_host_port, parse_peer_address
from p2p.pex import (
    MAX_PEX_ADDRS,
    PEX_ADDRS,
    PEX_REQUEST,
    decode_pex,
    encode_addrs,
    encode_ping,
    encode_request,
)
from p2p.session import TAG_SIZE, Inbox, Outbox, SecureSession

log = logging.getLogger("chainmerce.p2p")

BAN_POINTS = 100
PENALTY_DECAY_PER_SECOND = 1.0  # penalty points forgiven per second of good behaviour
FRAME_TARGET_BYTES = 256 * 1024  # the writer packs queued messages into frames up to this
READ_CHUNK = 256 * 1024
HANDSHAKE_READ = 4096
BACKOFF_START = 0.5
BACKOFF_MAX = 30.0
PEX_ANSWER_INTERVAL = 5.0  # a peer gets at most one address list per this many seconds
SEED_LINGER = 10.0  # a seed connection is dropped after its addresses or this long
SEED_RETRY = 30.0
MAINTAIN_TICK = 1.0
PUNISH_RATE = 10
_UNSPECIFIED_HOSTS = ("", "0.0.0.0", "::")


class _Peer:
    """One live, authenticated connection."""

    def __init__(self, result: HandshakeResult, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, outbound: bool, dial_host: str, dial_port: int,
                 config: NetworkConfig, persistent: bool, seed: bool):
        self.peer_id = result.peer_id
        self.moniker = result.moniker
        self.announced = result.listen_address
        self.outbound = outbound
        self.persistent = persistent
        self.seed = seed
        self.reader = reader
        self.writer = writer
        self.session: SecureSession = result.session
        self.early_data = result.early_data
        self.inbox = Inbox(config.max_message_bytes)
        self.outbox = Outbox()
        frame = min(config.max_frame_bytes, result.peer_max_frame_bytes)
        self.frame_budget = min(FRAME_TARGET_BYTES, frame - TAG_SIZE)
        self.wake = asyncio.Event()
        self.closed = False
        self.reader_task: asyncio.Task | None = None
        self.writer_task: asyncio.Task | None = None
        self.connected_at = time.time()
        self.bytes_sent = 0
        self.bytes_received = 0
        self.messages_received = 0
        now = time.monotonic()
        self.last_received_at = now
        self.sent_at_last_tick = 0
        self.pex_answered_at = -PEX_ANSWER_INTERVAL
        self.byte_tokens = 0.0
        self.byte_tokens_at = now
        self.msg_tokens = max(config.recv_messages_per_second, 100.0)  # start with a full burst
        self.msg_tokens_at = now
        self.advertised = self._advertised_address(dial_host, dial_port)

    def _advertised_address(self, dial_host: str, dial_port: int) -> tuple[str, int] | None:
        """Where others can dial this peer: the address we dialled, or the one it announced
        (with its unspecified host replaced by the address it connected from)."""
        if self.outbound:
            return dial_host, dial_port
        if not self.announced:
            return None
        host, port = parse_host_port(self.announced)
        if port == 0:
            return None
        if host in _UNSPECIFIED_HOSTS:
            peername = self.writer.get_extra_info("peername")
            if not peername:
                return None
            host = peername[0]
        return host, port

    def info(self, score: int) -> PeerInfo:
        return PeerInfo(self.peer_id, self.announced, self.outbound, self.moniker,
                        self.connected_at, self.bytes_sent, self.bytes_received,
                        self.outbox.messages_taken, self.messages_received, score)


class Network:
    """Authenticated, encrypted gossip between nodes. See docs/p2p.md."""

    def __init__(self, node_key: PrivateKey, chain_id: str, config: NetworkConfig,
                 handler: MessageHandler):
        self.node_key = node_key
        self.chain_id = validate_chain_id(chain_id)
        self.config = config
        self.handler = handler
        self.node_id = node_id_of(node_key.public_key)
        self.listen_host, self._requested_port = parse_host_port(config.listen)
        self.listen_port = 0
        self._persistent = {pid: (host, port) for pid, host, port in
                            map(parse_peer_address, config.persistent_peers)}
        self._seeds = [parse_peer_address(s) for s in config.seeds]
        self._peers: dict[bytes, _Peer] = {}
        self._bans: dict[bytes, float] = {}
        self._penalties: dict[bytes, tuple[float, float]] = {}
        self._book = AddressBook(config.address_book_size, self.node_id)
        self._dialling: set[bytes] = set()
        self._inbound_handshakes = 0
        self._tasks: set[asyncio.Task] = set()
        self._server: asyncio.base_events.Server | None = None
        self._wake_dialer: asyncio.Event | None = None
        self._closing = False

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        self._wake_dialer = asyncio.Event()
        self._server = await asyncio.start_server(self._on_inbound, self.listen_host,
                                                  self._requested_port)
        self.listen_port = self._server.sockets[0].getsockname()[1]
        log.info("p2p listening on %s as %s", self.listen_address, self.node_id.hex())
        for pid, (host, port) in self._persistent.items():
            self._spawn(self._persistent_loop(pid, host, port))
        for pid, host, port in self._seeds:
            self._spawn(self._dial(pid, host, port, seed=True))
        self._spawn(self._maintain_loop())

    async def stop(self) -> None:
        self._closing = True
        if self._server is not None:
            self._server.close()
        for peer in list(self._peers.values()):
            self._drop(peer, "shutting down")
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    @property
    def listen_address(self) -> str:
        return format_host_port(self.listen_host, self.listen_port)

    # --- the node's API --------------------------------------------------------------------

    def send(self, peer_id: bytes, channel: int, payload: bytes) -> bool:
        """Queue a message for one peer; False if it is not connected (or was too slow)."""
        if channel not in NODE_CHANNELS:
            raise ValueError(f"channel {channel} is not a node channel")
        if len(payload) > self.config.max_message_bytes:
            raise ValueError(f"message of {len(payload)} bytes exceeds max_message_bytes")
        peer = self._peers.get(peer_id)
        if peer is None:
            return False
        return self._queue(peer, channel, payload)

    def broadcast(self, channel: int, payload: bytes, exclude: bytes | None = None) -> int:
        """Queue a message for every connected peer but `exclude`; the number queued to."""
        if channel not in NODE_CHANNELS:
            raise ValueError(f"channel {channel} is not a node channel")
        if len(payload) > self.config.max_message_bytes:
            raise ValueError(f"message of {len(payload)} bytes exceeds max_message_bytes")
        queued = 0
        for peer in list(self._peers.values()):
            if peer.peer_id != exclude and self._queue(peer, channel, payload):
                queued += 1
        return queued

    def peers(self) -> list[PeerInfo]:
        now = time.monotonic()
        return [p.info(-round(self._penalty(p.peer_id, now))) for p in self._peers.values()]

    def punish(self, peer_id: bytes, reason: str, points: int = 10) -> None:
        """Score a peer down; at BAN_POINTS it is disconnected and banned for ban_seconds."""
        now = time.monotonic()
        total = self._penalty(peer_id, now) + max(0, points)
        if total >= BAN_POINTS:
            self._ban(peer_id, reason)
            return
        self._penalties[peer_id] = (total, now)
        log.info("peer %s punished (%d points, now %.0f): %s", peer_id.hex(), points, total,
                 reason)
        if len(self._penalties) > 10 * self.config.address_book_size:
            self._penalties = {k: v for k, v in self._penalties.items()
                               if self._penalty(k, now) > 0}

    def is_banned(self, peer_id: bytes) -> bool:
        until = self._bans.get(peer_id)
        if until is None:
            return False
        if until > time.monotonic():
            return True
        del self._bans[peer_id]
        return False

    # --- scoring ---------------------------------------------------------------------------

    def _penalty(self, peer_id: bytes, now: float) -> float:
        entry = self._penalties.get(peer_id)
        if entry is None:
            return 0.0
        points, at = entry
        return max(0.0, points - (now - at) * PENALTY_DECAY_PER_SECOND)

    def _ban(self, peer_id: bytes, reason: str) -> None:
        now = time.monotonic()
        log.warning("peer %s banned for %.0f s: %s", peer_id.hex(), self.config.ban_seconds,
                    reason)
        self._bans = {k: v for k, v in self._bans.items() if v > now}
        self._bans[peer_id] = now + self.config.ban_seconds
        self._penalties.pop(peer_id, None)
        self._book.remove(peer_id)
        peer = self._peers.get(peer_id)
        if peer is not None:
            self._drop(peer, f"banned: {reason}")

    # --- connections -----------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         initiator: bool, expected: bytes | None) -> HandshakeResult:
        hs = Handshake(self.node_key, self.chain_id, initiator=initiator,
                       listen_address=self.listen_address, moniker=self.config.moniker,
                       max_frame_bytes=self.config.max_frame_bytes, expected_peer_id=expected)

        async def run() -> HandshakeResult:
            writer.write(hs.start())
            while hs.result is None:
                data = await reader.read(HANDSHAKE_READ)
                if not data:
                    raise HandshakeError("connection closed during the handshake", "closed")
                out = hs.receive_data(data)
                if out:
                    writer.write(out)
                    await writer.drain()
            await writer.drain()
            return hs.result

        return await asyncio.wait_for(run(), self.config.handshake_timeout)

    def _on_inbound(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # our own task (not the server's) so stop() can cancel it cleanly
        self._spawn(self._serve_inbound(reader, writer))

    async def _serve_inbound(self, reader: asyncio.StreamReader,
                             writer: asyncio.StreamWriter) -> None:
        if self._closing or self._inbound_handshakes >= max(4, self.config.max_inbound):
            writer.close()
            return
        self._inbound_handshakes += 1
        try:
            result = await self._handshake(reader, writer, initiator=False, expected=None)
        except (P2PError, OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            log.debug("inbound handshake failed: %s", exc)
            writer.close()
            return
        finally:
            self._inbound_handshakes -= 1
        peer = self._admit(result, reader, writer, outbound=False, dial_host="", dial_port=0,
                           seed=False)
        if peer is not None:
            await self._run_peer(peer)

    async def _dial(self, peer_id: bytes, host: str, port: int, *, persistent: bool = False,
                    seed: bool = False) -> bool:
        """Dial and run the connection until it ends; True if a connection was established."""
        if (self._closing or peer_id in self._peers or peer_id in self._dialling
                or peer_id == self.node_id or self.is_banned(peer_id)):
            return False
        self._dialling.add(peer_id)
        writer = None
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port),
                                                    self.config.handshake_timeout)
            result = await self._handshake(reader, writer, initiator=True, expected=peer_id)
            peer = self._admit(result, reader, writer, outbound=True, dial_host=host,
                               dial_port=port, seed=seed)
        except (P2PError, OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            log.debug("dialling %s@%s:%d failed: %s", peer_id.hex(), host, port, exc)
            if writer is not None:
                writer.close()
            if not persistent and not seed:
                self._book.mark_failed(peer_id, time.monotonic())
            return False
        finally:
            self._dialling.discard(peer_id)
        if peer is None:
            return False
        await self._run_peer(peer)
        return True

    def _admit(self, result: HandshakeResult, reader: asyncio.StreamReader,
               writer: asyncio.StreamWriter, *, outbound: bool, dial_host: str, dial_port: int,
               seed: bool) -> _Peer | None:
        """Check and register an authenticated connection (no await: no races)."""
        pid = result.peer_id
        persistent = pid in self._persistent
        refusal = None
        if self._closing:
            refusal = "shutting down"
        elif self.is_banned(pid):
            refusal = "banned"
        elif not outbound and not persistent and self._count(outbound=False) >= \
                self.config.max_inbound:
            refusal = "inbound limit reached"
        existing = self._peers.get(pid)
        if refusal is None and existing is not None:
            if existing.outbound != outbound:
                # both sides dialled at once: both keep the one the smaller id dialled
                keep_new = (self.node_id < pid) == outbound
            else:
                keep_new = True  # same direction again: the old one is presumably dead
            if keep_new:
                self._drop(existing, "replaced by a newer connection")
            else:
                refusal = "duplicate connection"
        if refusal is not None:
            log.debug("refused peer %s: %s", pid.hex(), refusal)
            writer.close()
            return None
        peer = _Peer(result, reader, writer, outbound, dial_host, dial_port, self.config,
                     persistent, seed)
        self._peers[pid] = peer
        if outbound and not seed:
            self._book.mark_good(pid, dial_host, dial_port)
        log.info("peer %s connected (%s, %s)", pid.hex(), "outbound" if outbound else "inbound",
                 peer.announced)
        peer.writer_task = self._spawn(self._write_loop(peer))
        self._queue(peer, Channel.PEX, encode_request())
        if seed:
            asyncio.get_running_loop().call_later(
                SEED_LINGER, lambda: self._drop(peer, "seed connection done"))
        try:
            self.handler.on_peer_connected(pid)
        except Exception:
            log.exception("on_peer_connected failed")
        return peer

    def _count(self, outbound: bool) -> int:
        return sum(1 for p in self._peers.values() if p.outbound == outbound)

    async def _run_peer(self, peer: _Peer) -> None:
        if peer.closed:
            return
        peer.reader_task = self._spawn(self._read_loop(peer))
        await asyncio.wait({peer.reader_task})

    def _drop(self, peer: _Peer, reason: str) -> None:
        """Close a connection and forget it, synchronously."""
        if peer.closed:
            return
        peer.closed = True
        peer.outbox.clear()
        registered = self._peers.get(peer.peer_id) is peer
        if registered:
            del self._peers[peer.peer_id]
        with contextlib.suppress(Exception):
            peer.writer.close()
        current = asyncio.current_task()
        for task in (peer.reader_task, peer.writer_task):
            if task is not None and task is not current:
                task.cancel()
        log.info("peer %s disconnected: %s", peer.peer_id.hex(), reason)
        if registered:
            try:
                self.handler.on_peer_disconnected(peer.peer_id)
            except Exception:
                log.exception("on_peer_disconnected failed")
        if self._wake_dialer is not None:
            self._wake_dialer.set()

    def _queue(self, peer: _Peer, channel: int, payload: bytes) -> bool:
        if peer.closed:
            return False
        outbox = peer.outbox
        if outbox.queued_bytes and outbox.queued_bytes + len(payload) > \
                self.config.send_queue_bytes:
            self._drop(peer, f"send queue over {self.config.send_queue_bytes} bytes "
                             "(peer too slow)")
            return False
        outbox.push(channel, payload)
        peer.wake.set()
        return True

    # --- per-peer tasks --------------------------------------------------------------------

    async def _write_loop(self, peer: _Peer) -> None:
        outbox, session, writer = peer.outbox, peer.session, peer.writer
        try:
            while not peer.closed:
                if not len(outbox):
                    peer.wake.clear()
                    await peer.wake.wait()
                    continue
                while (plaintext := outbox.next_plaintext(peer.frame_budget)) is not None:
                    frame = session.seal(plaintext)
                    writer.write(frame)
                    peer.bytes_sent += len(frame)
                    await writer.drain()
        except (OSError, RuntimeError) as exc:  # RuntimeError: the transport closed under us
            self._drop(peer, f"write failed: {exc}")

    async def _read_loop(self, peer: _Peer) -> None:
        reason = "connection closed by peer"
        try:
            if peer.early_data:  # frames that arrived with the handshake
                peer.session.feed(peer.early_data)
                peer.early_data = b""
                self._process_frames(peer)
            byte_rate = self.config.recv_bytes_per_second
            byte_burst = max(byte_rate, 2.0 * self.config.max_frame_bytes)
            peer.byte_tokens = byte_burst
            read = peer.reader.read
            while not peer.closed:
                data = await read(READ_CHUNK)
                if not data:
                    break
                peer.bytes_received += len(data)
                peer.last_received_at = now = time.monotonic()
                peer.session.feed(data)
                self._process_frames(peer)
                if byte_rate > 0:
                    peer.byte_tokens = min(byte_burst, peer.byte_tokens
                                           + (now - peer.byte_tokens_at) * byte_rate) - len(data)
                    peer.byte_tokens_at = now
                    if peer.byte_tokens < 0:  # throttle: TCP pushes back on the sender
                        await asyncio.sleep(-peer.byte_tokens / byte_rate)
        except P2PError as exc:
            reason = f"protocol violation ({exc.name}): {exc}"
            self._ban(peer.peer_id, reason)
        except (OSError, asyncio.IncompleteReadError) as exc:
            reason = f"read failed: {exc}"
        finally:
            self._drop(peer, reason)

    def _process_frames(self, peer: _Peer) -> None:
        """Open every complete frame and deliver its messages. Raises P2PError."""
        rate = self.config.recv_messages_per_second
        pid = peer.peer_id
        while not peer.closed and (plaintext := peer.session.read_frame()) is not None:
            messages = peer.inbox.feed(plaintext)
            if rate > 0:
                now = time.monotonic()
                peer.msg_tokens = min(max(rate, 100.0), peer.msg_tokens
                                      + (now - peer.msg_tokens_at) * rate)
                peer.msg_tokens_at = now
            for channel, payload in messages:
                peer.messages_received += 1
                if rate > 0:
                    peer.msg_tokens -= 1
                    if peer.msg_tokens < 0:
                        self.punish(pid, "message rate limit exceeded", PUNISH_RATE)
                        peer.msg_tokens = 0.0  # one punishment per excess burst
                        if peer.closed:
                            return
                        continue
                if channel in NODE_CHANNELS:
                    try:
                        self.handler.on_message(pid, channel, payload)
                    except Exception:
                        log.exception("on_message failed (channel %d)", channel)
                elif channel == Channel.PEX:
                    self._on_pex(peer, payload)
                else:
                    raise FrameError(f"unknown channel {channel}", "unknown_channel")
                if peer.closed:
                    return

    # --- peer exchange ---------------------------------------------------------------------

    def _on_pex(self, peer: _Peer, payload: bytes) -> None:
        message = decode_pex(payload)
        if message.kind == PEX_REQUEST:
            now = time.monotonic()
            if now - peer.pex_answered_at >= PEX_ANSWER_INTERVAL:
                peer.pex_answered_at = now
                self._queue(peer, Channel.PEX, encode_addrs(self._shareable(peer.peer_id)))
        elif message.kind == PEX_ADDRS:
            learned = 0
            for pid, host, port in message.addrs:
                if pid not in self._peers and not self.is_banned(pid) and \
                        self._book.add(pid, host, port):
                    learned += 1
            if learned and self._wake_dialer is not None:
                self._wake_dialer.set()
            if peer.seed:
                self._drop(peer, "seed gave its addresses")

    def _shareable(self, asker: bytes) -> list[tuple[bytes, str, int]]:
        addrs: list[tuple[bytes, str, int]] = []
        seen = {asker}
        for peer in self._peers.values():
            if peer.advertised is not None and peer.peer_id not in seen and not peer.seed:
                seen.add(peer.peer_id)
                addrs.append((peer.peer_id, *peer.advertised))
        random.shuffle(addrs)
        addrs = addrs[:MAX_PEX_ADDRS]
        for entry in self._book.sample(MAX_PEX_ADDRS - len(addrs), seen):
            addrs.append((entry.peer_id, entry.host, entry.port))
        return addrs

    # --- dialling --------------------------------------------------------------------------

    async def _persistent_loop(self, peer_id: bytes, host: str, port: int) -> None:
        backoff = BACKOFF_START
        while not self._closing:
            if peer_id in self._peers or peer_id in self._dialling or self.is_banned(peer_id):
                await asyncio.sleep(BACKOFF_START)
                continue
            if await self._dial(peer_id, host, port, persistent=True):
                backoff = BACKOFF_START
            else:
                backoff = min(BACKOFF_MAX, backoff * 2)
            await asyncio.sleep(backoff * random.uniform(0.5, 1.0))

    async def _maintain_loop(self) -> None:
        assert self._wake_dialer is not None
        last_pex = last_ping = last_seed = time.monotonic()
        while not self._closing:
            self._dial_more()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_dialer.wait(), MAINTAIN_TICK)
            self._wake_dialer.clear()
            now = time.monotonic()
            if now - last_ping >= self.config.ping_interval:
                last_ping = now
                self._keepalive(now)
            if now - last_pex >= self.config.pex_interval:
                last_pex = now
                if self._count(outbound=True) < self.config.max_outbound and self._peers:
                    peer = random.choice(list(self._peers.values()))
                    self._queue(peer, Channel.PEX, encode_request())
            if self._seeds and not self._peers and now - last_seed >= SEED_RETRY:
                last_seed = now
                for pid, host, port in self._seeds:
                    self._spawn(self._dial(pid, host, port, seed=True))

    def _keepalive(self, now: float) -> None:
        for peer in list(self._peers.values()):
            if now - peer.last_received_at > self.config.idle_timeout:
                self._drop(peer, "idle timeout")
            elif peer.bytes_sent == peer.sent_at_last_tick:
                self._queue(peer, Channel.PEX, encode_ping())
            peer.sent_at_last_tick = peer.bytes_sent

    def _dial_more(self) -> None:
        wanted = self.config.max_outbound - self._count(outbound=True) - len(
            [p for p in self._dialling if p not in self._persistent])
        if wanted <= 0:
            return
        exclude = set(self._peers) | self._dialling | set(self._persistent)
        for entry in self._book.candidates(time.monotonic(), exclude):
            if wanted <= 0:
                break
            if self.is_banned(entry.peer_id):
                continue
            # the task adds itself to _dialling before this loop runs _dial_more again
            self._spawn(self._dial(entry.peer_id, entry.host, entry.port))
            wanted -= 1

