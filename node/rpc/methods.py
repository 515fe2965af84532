"""The node's JSON-RPC methods. Names follow CometBFT where the meaning is the same."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import commerce_vm as vm
from commerce_vm import query
from commerce_vm import txtypes as T
from consensus.block import Block
from consensus.messages import CommitCertificate
from core.address import address_to_text
from core.encoding import decode
from core.hashing import sha256
from core.merkle import inclusion_proof
from node.app import read_tx_record
from node.mempool import MempoolError
from node.rpc.dispatcher import Dispatcher, Method
from node.rpc.errors import (
    COMMIT_TIMEOUT,
    INVALID_PARAMS,
    MEMPOOL_FULL,
    NOT_FOUND,
    TX_ALREADY_KNOWN,
    RPCError,
    invalid_params,
    not_found,
)
from node.rpc.params import Param, bind
from node.views import (
    block_view,
    commit_view,
    header_view,
    raw_tx_view,
    result_view,
    tx_view,
    validators_view,
)
from storage.chaindb import ChainDB, ChainSnapshot

if TYPE_CHECKING:
    from node.node import Node

MAX_BLOCK_BYTES = 64 * 1024 * 1024
BLOCKCHAIN_PAGE = 20
TX_ERRORS = tuple(sorted(k.code for k in vm.ALL_ERRORS)) + (MEMPOOL_FULL, TX_ALREADY_KNOWN)


def _height(p: str = "height", doc: str = "block height; latest when omitted") -> Param:
    return Param(p, "int", doc, minimum=1)


# The committed snapshot a request body reads when it is answered on the RPC thread.
COMMITTED: ContextVar[ChainSnapshot | None] = ContextVar("committed", default=None)


def register_methods(d: Dispatcher, node: Node) -> None:
    max_page = node.config.get("rpc", "max_page_size")
    commit_timeout = node.config.get("rpc", "commit_timeout_ms") / 1000
    chain_id = node.chain_id
    initial_height = node.genesis.initial_height

    @contextmanager
    def read_committed() -> Iterator[None]:
        assert node.db is not None
        with node.db.snapshot() as snapshot:
            token = COMMITTED.set(snapshot)
            try:
                yield
            finally:
                COMMITTED.reset(token)

    d.read_scope = read_committed

    def limit_param() -> Param:
        return Param("limit", "int", f"page size, at most {max_page}", default=20,
                     minimum=1, maximum=max_page)

    cursor = Param("cursor", "int", "next_cursor from the previous page")

    def add(name: str, summary: str, params: tuple[Param, ...] = (), errors: tuple = (),
            reads_committed: bool = False):
        def wrap(fn):
            d.register(Method(name, fn, params, summary, errors=errors,
                              reads_committed=reads_committed))
            return fn
        return wrap

    def reads(name: str, summary: str, params: tuple[Param, ...] = (), errors: tuple = ()):
        """A method that reads only committed chain state, through `chain_view()`: answered on
        the RPC thread from a snapshot when the server runs on one."""
        return add(name, summary, params, errors, reads_committed=True)

    def chain_view() -> ChainDB | ChainSnapshot:
        """The committed chain: the request's snapshot on the RPC thread, else the live db."""
        snapshot = COMMITTED.get()
        if snapshot is not None:
            return snapshot
        assert node.db is not None
        return node.db

    def state() -> vm.StateReader:
        return chain_view().state

    def latest() -> int:
        height = chain_view().last_committed_height()
        return initial_height - 1 if height is None else height

    def load_block(height: int) -> Block:
        raw = chain_view().blocks.get_block(height)
        if raw is None:
            raise not_found(f"block at height {height}")
        return Block.from_list(decode(raw, MAX_BLOCK_BYTES))

    def load_commit(height: int) -> CommitCertificate:
        raw = chain_view().blocks.get_commit(height)
        if raw is None:
            raise not_found(f"commit at height {height}")
        return CommitCertificate.from_list(decode(raw, MAX_BLOCK_BYTES))

    def resolve_height(height: int | None) -> int:
        top = latest()
        if height is None:
            if top < initial_height:
                raise not_found("block (the chain has no blocks yet)")
            return top
        if height > top:
            raise not_found(f"block at height {height} (latest is {top})")
        return height

    # --- node -----------------------------------------------------------------------------

    @add("status", "Node identity, latest block and consensus position.")
    def status() -> dict[str, Any]:
        chain = node.engine.chain
        height, round_, phase = node.engine.status
        validators = chain.validators.at(chain.next_height)
        index = validators.index_of(node.validator_key.public_key)
        meta = node.db.state_meta() if node.db else None
        return {
            "node_info": {"moniker": node.config.get("node", "moniker"), "chain_id": chain_id,
                          "version": _version()},
            "sync_info": {"latest_block_height": chain.last_height,
                          "latest_block_hash": chain.last_block_hash.hex(),
                          "latest_app_hash": meta.app_hash.hex() if meta else None,
                          "latest_block_time_ms": chain.last_block_time_ms,
                          "catching_up": node.net.catching_up,
                          "synced_blocks": node.net.synced_blocks},
            "validator_info": {"address": address_to_text(node.validator_address),
                               "pub_key": node.validator_key.public_key.hex(),
                               "power": 0 if index is None else validators.power_of(index)},
            "consensus": {"height": height, "round": round_, "step": phase.name.lower()},
        }

    from node.driver import now_ms

    stall_ms = node.config.get("rpc", "health_stall_ms")
    started_ms = now_ms()

    @add("health", "Whether the node is making progress: no consensus fault, a block "
         "committed within [rpc] health_stall_ms, not catching up.")
    def health() -> dict[str, Any]:
        fault = node.driver.fault
        now = now_ms()
        since = (now - node.last_commit_time_ms) / 1000 if node.last_commit_time_ms else None
        # before the first commit since start, the stall window counts from the start
        stalled = now - (node.last_commit_time_ms or started_ms) > stall_ms
        catching_up = node.net.catching_up
        return {"healthy": fault is None and not stalled and not catching_up,
                "height": latest(), "seconds_since_last_commit": since,
                "fault": None if fault is None else str(fault),
                "stalled": stalled, "catching_up": catching_up}

    @add("net_info", "This node's p2p identity and its connected peers with their traffic.")
    def net_info() -> dict[str, Any]:
        network = node.network
        if network is None:
            return {"listening": False, "node_id": None, "n_peers": 0, "peers": []}
        peers = [{"node_id": p.peer_id.hex(), "address": p.address, "moniker": p.moniker,
                  "direction": "outbound" if p.outbound else "inbound",
                  "connected_at": p.connected_at, "score": p.score,
                  "bytes_sent": p.bytes_sent, "bytes_received": p.bytes_received,
                  "messages_sent": p.messages_sent, "messages_received": p.messages_received,
                  "height": node.net.peers[p.peer_id].height if p.peer_id in node.net.peers
                  else None}
                 for p in network.peers()]
        return {"listening": True, "node_id": network.node_id.hex(),
                "listen_port": network.listen_port, "n_peers": len(peers), "peers": peers}

    @reads("genesis", "The genesis document.")
    def genesis() -> dict[str, Any]:
        return node.genesis.to_dict()

    # --- blocks ---------------------------------------------------------------------------

    hashes_only = Param("hashes_only", "bool",
                        "list the txs as their hashes (hex) instead of decoding them",
                        default=False)

    @reads("block", "A block with its txs decoded (or their hashes only).",
           (_height(), hashes_only))
    def block(height: int | None, hashes_only: bool) -> dict[str, Any]:
        return block_view(load_block(resolve_height(height)), chain_id, hashes_only)

    @reads("block_by_hash", "A block found by its hash.",
         (Param("hash", "hash", "block hash", required=True), hashes_only))
    def block_by_hash(hash: bytes, hashes_only: bool) -> dict[str, Any]:
        height = chain_view().blocks.height_of(hash)
        if height is None:
            raise not_found("block with this hash")
        return block_view(load_block(height), chain_id, hashes_only)

    @reads("blockchain", f"Block headers from max_height down to min_height, at most {BLOCKCHAIN_PAGE}.",
         (_height("min_height", "lowest height"), _height("max_height", "highest height")))
    def blockchain(min_height: int | None, max_height: int | None) -> dict[str, Any]:
        top = latest()
        high = min(max_height or top, top)
        low = max(min_height or 1, high - BLOCKCHAIN_PAGE + 1, initial_height)
        if min_height and max_height and min_height > max_height:
            raise invalid_params("min_height is above max_height")
        headers = [header_view(load_block(h).header) for h in range(high, low - 1, -1)]
        return {"last_height": top, "headers": headers}

    @reads("commit", "The commit certificate (+2/3 precommits) of a block.", (_height(),))
    def commit(height: int | None) -> dict[str, Any]:
        h = resolve_height(height)
        return {"header": header_view(load_block(h).header), "commit": commit_view(load_commit(h))}

    @add("validators", "The consensus validator set at a height (latest when omitted).",
         (_height(),))
    def validators(height: int | None) -> dict[str, Any]:
        chain = node.engine.chain
        h = chain.next_height if height is None else height
        if h > chain.next_height + 1:
            raise not_found(f"validator set at height {h} (not known yet)")
        return validators_view(chain.validators.at(h), h)

    # --- txs ------------------------------------------------------------------------------

    def tx_answer(tx_hash: bytes, prove: bool = False) -> dict[str, Any]:
        committed = chain_view()
        location = committed.txs.by_hash(tx_hash)
        record = read_tx_record(committed, tx_hash) if location is not None else None
        if location is None or record is None:
            raise not_found("tx with this hash")
        raw, result = record
        answer = {"hash": tx_hash.hex(), "height": location.height, "index": location.index,
                  "tx": raw_tx_view(raw, chain_id), "result": result_view(result)}
        if prove:  # only a proof needs the whole block
            blk = load_block(location.height)
            answer["proof"] = {"txs_root": blk.header.txs_root.hex(), "index": location.index,
                               "total": len(blk.txs),
                               "aunts": [h.hex() for h in inclusion_proof(list(blk.txs),
                                                                          location.index)]}
        return answer

    @reads("tx", "A committed tx with its result, optionally with a Merkle inclusion proof.",
         (Param("hash", "hash", "tx hash", required=True),
          Param("prove", "bool", "include a proof against the block's txs_root", default=False)))
    def tx(hash: bytes, prove: bool) -> dict[str, Any]:
        return tx_answer(hash, prove)

    @reads("tx_search", "Committed txs by account, type or height; newest first, paginated.",
         (Param("account", "address", "an account the tx involves"),
          Param("type", "str", "a tx type name", max_len=32),
          _height("height", "a block height"), limit_param(),
          Param("cursor", "str", "next_cursor from the previous page", max_len=40)))
    def tx_search(account: bytes | None, type: str | None, height: int | None, limit: int,
                  cursor: str | None) -> dict[str, Any]:
        if sum(x is not None for x in (account, type, height)) != 1:
            raise invalid_params("give exactly one of account, type, height")
        position = None
        if cursor is not None:
            try:
                h, _, i = cursor.partition(":")
                position = (int(h), int(i))
            except ValueError:
                raise invalid_params("cursor must be 'height:index'") from None
            if not (0 <= position[0] < 2**64 and 0 <= position[1] < 2**32):
                raise invalid_params("cursor is out of range")
        if height is not None:
            refs, following = chain_view().txs.by_height(height), None
        elif account is not None:
            page = chain_view().txs.by_account(account, limit, position)
            refs, following = page.items, page.next_cursor
        else:
            if type not in T.TYPE_CODES:
                raise invalid_params(f"unknown tx type {type!r}")
            page = chain_view().txs.by_type(T.TYPE_CODES[type], limit, position)
            refs, following = page.items, page.next_cursor
        return {"txs": [tx_answer(r.tx_hash) for r in refs],
                "next_cursor": None if following is None else f"{following[0]}:{following[1]}"}

    tx_param = (Param("tx", "hex", "the signed tx, hex", required=True, max_len=1 << 20),)

    async def verify_submitted(requests: list[Any]) -> None:
        """Check the signatures of every tx a body submits, in the verify pool, before the
        requests run one by one in order (see node.verifier)."""
        raws = []
        for request in requests:
            if isinstance(request, dict) and request.get("method") in BROADCASTS:
                try:
                    raws.append(bind(tx_param, request.get("params"))["tx"])
                except RPCError:
                    continue  # answered by the method itself
        await node.verifier.check_many(raws)

    d.prepare.append(verify_submitted)

    def submit(raw: bytes) -> vm.Tx:
        try:
            return node.submit(raw)
        except MempoolError as err:
            kind = vm.BY_CODE.get(err.code)
            raise RPCError(err.code, err.message,
                           {"name": err.name, "rule": kind.rule if kind else err.message}) from None

    @add("broadcast_tx_async", "Queue a tx for checking and return its hash at once.",
         tx_param)
    def broadcast_tx_async(tx: bytes) -> dict[str, Any]:
        asyncio.get_running_loop().call_soon(_quiet_submit, node, tx)
        return {"hash": sha256(tx).hex()}

    @add("broadcast_tx_sync", "Check a tx and add it to the mempool; errors carry the VM's code. "
         "`status` is `pooled`, or `parked` (with `waiting_for_nonce`) while an earlier nonce "
         "of its sender is missing.",
         tx_param, TX_ERRORS)
    def broadcast_tx_sync(tx: bytes) -> dict[str, Any]:
        checked = submit(tx)
        if node.mempool.is_parked(checked.hash):
            # accepted, but no block takes it before the sender's earlier nonces arrive:
            # say so, or a client that skipped a nonce waits for a commit that never comes
            return {"hash": checked.hash.hex(), "code": 0, "status": "parked",
                    "waiting_for_nonce": node.mempool.next_nonce(checked.sender_address)}
        return {"hash": checked.hash.hex(), "code": 0, "status": "pooled"}

    @add("broadcast_tx_commit", "Submit a tx and wait until it is committed; returns its result.",
         tx_param, TX_ERRORS + (COMMIT_TIMEOUT,))
    async def broadcast_tx_commit(tx: bytes) -> dict[str, Any]:
        tx_hash = sha256(tx)
        waiter = node.wait_for_tx(tx_hash)
        try:
            submit(tx)
            height, index, result = await asyncio.wait_for(waiter, commit_timeout)
        except TimeoutError:
            raise RPCError(COMMIT_TIMEOUT, "tx was not committed in time; it may still be",
                           {"hash": tx_hash.hex()}) from None
        finally:
            waiter.cancel()
            node.forget_waiter(tx_hash, waiter)
        return {"hash": tx_hash.hex(), "height": height, "index": index, "code": result.code,
                "name": result.name, "message": result.message,
                "events": result_view({"code": result.code, "name": result.name,
                                       "message": result.message,
                                       "fee_charged": result.fee_charged,
                                       "tx_type": result.tx_type,
                                       "events": [{"kind": e.kind, "attributes": e.attributes}
                                                  for e in result.events]})["events"]}

    @add("unconfirmed_txs", "Txs waiting in the mempool, oldest first.", (limit_param(),))
    def unconfirmed_txs(limit: int) -> dict[str, Any]:
        txs = node.mempool.txs(limit)
        return {"n_txs": len(node.mempool), "total_bytes": node.mempool.size_bytes,
                "txs": [tx_view(t) for t in txs]}

    @add("num_unconfirmed_txs", "How many txs wait in the mempool.")
    def num_unconfirmed_txs() -> dict[str, Any]:
        return {"n_txs": len(node.mempool), "total_bytes": node.mempool.size_bytes}

    # --- commerce ---------------------------------------------------------------------------

    address = Param("address", "address", "account address (cm1...)", required=True)

    @reads("account", "Balance and nonce of an account; next_nonce counts its mempool txs.",
         (address,))
    def account(address: bytes) -> dict[str, Any]:
        committed = state()
        answer = query.account(committed, address)
        answer["next_nonce"] = node.mempool.next_nonce(address, committed)
        return answer

    @reads("listing", "One listing.", (Param("id", "int", "listing id", required=True, minimum=1),))
    def listing(id: int) -> dict[str, Any]:
        found = query.listing(state(), id)
        if found is None:
            raise not_found(f"listing {id}")
        return found

    @reads("listings", "Listings, all or by merchant, by id; paginated.",
         (Param("merchant", "address", "only this merchant's listings"), limit_param(), cursor))
    def listings(merchant: bytes | None, limit: int, cursor: int | None) -> dict[str, Any]:
        return query.listings(state(), merchant, limit, cursor)

    @reads("order", "One order.", (Param("id", "int", "order id", required=True, minimum=1),))
    def order(id: int) -> dict[str, Any]:
        found = query.order(state(), id)
        if found is None:
            raise not_found(f"order {id}")
        return found

    @reads("orders", "Orders by buyer, merchant or listing (at most one filter); paginated.",
         (Param("buyer", "address", "the buyer"), Param("merchant", "address", "the merchant"),
          Param("listing", "int", "a listing id", minimum=1), limit_param(), cursor))
    def orders(buyer, merchant, listing, limit, cursor) -> dict[str, Any]:
        try:
            return query.orders(state(), buyer, merchant, listing, limit, cursor)
        except ValueError as exc:
            raise invalid_params(str(exc)) from None

    @reads("reviews", "Reviews of a merchant or a listing (exactly one); paginated.",
         (Param("merchant", "address", "the merchant"),
          Param("listing", "int", "a listing id", minimum=1), limit_param(), cursor))
    def reviews(merchant, listing, limit, cursor) -> dict[str, Any]:
        try:
            return query.reviews(state(), merchant, listing, limit, cursor)
        except ValueError as exc:
            raise invalid_params(str(exc)) from None

    @reads("reputation", "A merchant's reputation from its reviews.",
         (Param("merchant", "address", "the merchant", required=True),))
    def reputation(merchant: bytes) -> dict[str, Any]:
        return query.reputation(state(), merchant)

    @reads("provenance", "An order's trail: the listing's origin, then every checkpoint.",
         (Param("order", "int", "order id", required=True, minimum=1),))
    def provenance(order: int) -> dict[str, Any]:
        found = query.provenance(state(), order)
        if found is None:
            raise not_found(f"order {order}")
        return found

    @reads("rewards_pool", "The rewards pool and the total escrow held.")
    def rewards_pool() -> dict[str, Any]:
        return query.rewards_pool(state())

    @reads("params", "The chain's genesis params as committed to state.")
    def params() -> dict[str, Any]:
        return query.params(state())

    assert all(code not in (INVALID_PARAMS, NOT_FOUND) for code in TX_ERRORS)


BROADCASTS = frozenset({"broadcast_tx_async", "broadcast_tx_sync", "broadcast_tx_commit"})


def _quiet_submit(node: Node, raw: bytes) -> None:
    try:
        node.submit(raw)
    except MempoolError:
        pass  # async submission: the client asked not to hear about checks


@functools.cache  # read from the installed package's metadata on disk: once per process
def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("chainmerce")
    except PackageNotFoundError:
        return "unknown"
