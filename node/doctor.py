"""`chainmerce doctor`: an offline integrity check of a node home.

Run it on a stopped node (the chain DB is locked while a node runs; doctor then says so in
one line). It never writes: the WAL is parsed from its bytes (opening it as the node does
would truncate a torn tail), the signing state is only loaded.

What it checks, from the initial height to the latest:
- every height has a block and a commit certificate, the hash index finds each block;
- each block passes consensus's own header validation against the chain state replayed
  from genesis (chain id, height, prev_hash link, last_commit certifying the parent with
  +2/3 of the set at that height, BFT time, txs_root, evidence, validator set hashes,
  proposer) - the validator history comes from the chain state stored with the last block;
- each block's certificate carries +2/3 of the validator set at its height;
- tx results exist for every block and name its txs in order; the tx index (`T b`, `T h`)
  points every tx at its (height, position); with `full`, every account and type index
  entry too;
- the state's (height, app hash) record matches the last header's app hash, the app-hash
  tree stored in the state, and an app hash recomputed from every stored state value;
- the stored consensus chain state agrees with the last block and certificate;
- the consensus WAL and the signing state file parse.

Problems are reported one line each; `ok` is True when there are none.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import commerce_vm as vm
from commerce_vm.expiry import expected_expiry_index
from commerce_vm.ledger import EXPIRY
from consensus.block import Block
from consensus.chain import BlockLimits, ChainState, validate_block
from consensus.errors import ConsensusError
from consensus.messages import CommitCertificate, verify_commit
from consensus.validators import Validator, ValidatorSet
from core.encoding import decode
from core.errors import DecodeError
from core.hashing import sha256
from node.app import META_CHAIN_STATE, META_GENESIS_HASH, decode_tx_record, tx_record_key
from node.config import ConfigError, load_config
from node.genesis import Genesis, GenesisError, load_genesis
from node.home import Home
from storage.chaindb import ChainDB
from storage.errors import SigningStateError, StorageError, StoreLockedError
from storage.layout import read_u32, read_u64
from storage.signing_state import SigningStateFile
from storage.txindex import SUB_ACCOUNT, SUB_HASH, SUB_TYPE
from storage.wal import DEFAULT_MAX_RECORD, MAGIC, _scan

MAX_STORED_ITEM = 64 * 1024 * 1024
MAX_PROBLEMS = 200  # a badly broken store would otherwise print one line per block


class DoctorError(Exception):
    """Doctor cannot run at all (not a home, DB locked by a running node); one line."""


@dataclass(slots=True)
class Report:
    home: str
    initial_height: int = 1
    latest_height: int | None = None
    blocks_checked: int = 0
    txs_checked: int = 0
    state_keys: int = 0
    app_hash: str = ""
    problems: list[str] = field(default_factory=list)
    truncated: int = 0  # problems beyond MAX_PROBLEMS, not listed

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, line: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(line)
        else:
            self.truncated += 1

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["ok"] = self.ok
        return data


def check_home(home_dir: Path | str, full: bool = False) -> Report:
    """Check a stopped node's home. Raises DoctorError when the check cannot start."""
    home = Home(Path(home_dir))
    if not home.config_file.exists() or not home.genesis_file.exists():
        raise DoctorError(f"{home.root} is not a node home (no config/config.toml or genesis)")
    try:
        genesis = load_genesis(home.genesis_file)
    except GenesisError as exc:
        raise DoctorError(str(exc)) from None
    limits = BlockLimits()
    try:
        config = load_config(home.config_file)
        if config.get("storage", "backend") == "memory":
            raise DoctorError("this home uses the memory backend: there is nothing stored")
        consensus = config["consensus"]
        limits = BlockLimits(max_txs=consensus["max_block_txs"],
                             max_block_bytes=consensus["max_block_bytes"])
    except ConfigError:
        pass  # the config is not the chain: check the chain with the default limits
    if not (home.db_path / "CURRENT").exists():
        raise DoctorError(f"no chain database at {home.db_path} (the node never started?)")
    report = Report(str(home.root), initial_height=genesis.initial_height)
    try:
        db = ChainDB.open(home.db_path, "leveldb")
    except StoreLockedError:
        raise DoctorError(f"{home.db_path} is locked: stop the node before running doctor"
                          ) from None
    except StorageError as exc:
        report.problem(f"chain db: {exc}")
        _check_files(home, report)
        return report
    try:
        _check_db(db, genesis, limits, report, full)
    finally:
        db.close()
    _check_files(home, report)
    return report


def _check_db(db: ChainDB, genesis: Genesis, limits: BlockLimits, report: Report,
              full: bool) -> None:
    stored_genesis = db.get_meta(META_GENESIS_HASH)
    if stored_genesis is not None and stored_genesis != genesis.hash():
        report.problem("genesis: the data directory belongs to another genesis file")
    latest = db.last_committed_height()
    report.latest_height = latest
    meta = db.state_meta()
    if meta is None:
        report.problem("state: no (height, app hash) record: genesis was never written")
        return
    if latest is None:
        _check_genesis_only(db, genesis, meta.height, meta.app_hash, report)
        return
    chain = _stored_chain_state(db, report)
    if chain is None:
        return
    last_block = _check_blocks(db, genesis, chain, limits, report, latest)
    if full:
        _check_list_indexes(db, report)
    if last_block is None:
        return
    if meta.app_hash != last_block.header.app_hash:
        report.problem(f"state: app hash {meta.app_hash.hex()[:16]} is not the app hash of "
                       f"block {latest} ({last_block.header.app_hash.hex()[:16]})")
    _check_state(db, meta.app_hash, report)
    if chain.last_block_hash != last_block.hash:
        report.problem("chain state: last block hash is not the hash of the latest block")
    cert_raw = db.blocks.get_commit(latest)
    if chain.last_commit is None or cert_raw is None or chain.last_commit.encode() != cert_raw:
        report.problem("chain state: last commit is not the stored commit of the latest block")


def _check_genesis_only(db: ChainDB, genesis: Genesis, height: int, app_hash: bytes,
                        report: Report) -> None:
    if height != genesis.initial_height - 1:
        report.problem(f"state: at height {height} but no block is stored")
    _, expected = vm.genesis_changes(genesis.params)
    if app_hash != expected:
        report.problem("state: the genesis app hash is not the one genesis.json yields")
    _check_state(db, app_hash, report)


def _stored_chain_state(db: ChainDB, report: Report) -> ChainState | None:
    raw = db.get_meta(META_CHAIN_STATE)
    if raw is None:
        report.problem("chain state: missing (the consensus state stored with each block)")
        return None
    try:
        chain = ChainState.decode(raw)
    except ConsensusError as exc:
        report.problem(f"chain state: {exc}")
        return None
    if chain.last_height != report.latest_height:
        report.problem(f"chain state: at height {chain.last_height}, blocks end at "
                       f"{report.latest_height}")
    return chain


def _genesis_chain_state(genesis: Genesis, stored: ChainState, report: Report) -> ChainState:
    params = genesis.params
    validators = ValidatorSet(Validator(pk, power) for pk, power in params.validators)
    start = ChainState.genesis(genesis.chain_id, validators, genesis.genesis_time_ms,
                               genesis.initial_height)
    if stored.validators.at(genesis.initial_height) != validators:
        report.problem("chain state: the validator history does not start with the genesis set")
    if (stored.chain_id, stored.genesis_time_ms, stored.initial_height) != (
            start.chain_id, start.genesis_time_ms, start.initial_height):
        report.problem("chain state: chain id, genesis time or initial height differ from "
                       "genesis.json")
    # The stored history knows every set change, including those of the heights replayed
    # here, so the replay advances with no updates of its own.
    return dataclasses.replace(start, validators=stored.validators)


def _stored_blocks(db: ChainDB, start: int, end: int, report: Report
                   ) -> Iterator[tuple[int, Block | None, CommitCertificate | None]]:
    """(height, block, certificate) for each height in [start, end]; None where missing or
    undecodable (reported)."""
    expected = start
    try:
        for height, block_raw, cert_raw in db.blocks.iter_blocks(start, end):
            while expected < height:
                report.problem(f"block {expected}: missing block or commit")
                yield expected, None, None
                expected += 1
            yield height, _decode_block(height, block_raw, report), \
                _decode_cert(height, cert_raw, report)
            expected = height + 1
    except StorageError as exc:
        report.problem(f"blocks: {exc}")
    while expected <= end:
        report.problem(f"block {expected}: missing block or commit")
        yield expected, None, None
        expected += 1


def _decode_block(height: int, raw: bytes, report: Report) -> Block | None:
    try:
        return Block.from_list(decode(raw, MAX_STORED_ITEM))
    except (DecodeError, ConsensusError) as exc:
        report.problem(f"block {height}: cannot decode: {exc}")
        return None


def _decode_cert(height: int, raw: bytes, report: Report) -> CommitCertificate | None:
    try:
        return CommitCertificate.from_list(decode(raw, MAX_STORED_ITEM))
    except (DecodeError, ConsensusError) as exc:
        report.problem(f"block {height}: cannot decode its commit: {exc}")
        return None


def _check_blocks(db: ChainDB, genesis: Genesis, stored: ChainState, limits: BlockLimits,
                  report: Report, latest: int) -> Block | None:
    state = _genesis_chain_state(genesis, stored, report)
    last: Block | None = None
    for height, block, cert in _stored_blocks(db, genesis.initial_height, latest, report):
        if block is None or cert is None:
            return None  # the replay cannot go past a hole; the hole is reported
        report.blocks_checked += 1
        if block.height != height:
            report.problem(f"block {height}: stored under height {height} but says "
                           f"{block.height}")
            return None
        try:
            validate_block(block, state, limits)
        except ConsensusError as exc:
            report.problem(f"block {height}: {exc}")
        try:
            verify_commit(cert, state.validators.at(height), state.chain_id, height=height,
                          block_hash=block.hash)
        except ConsensusError as exc:
            report.problem(f"block {height}: commit certificate: {exc}")
        if db.blocks.height_of(block.hash) != height:
            report.problem(f"block {height}: the hash index does not point at it")
        _check_block_txs(db, height, block, report)
        state = state.advance(block, cert, ())
        last = block
    return last


def _check_block_txs(db: ChainDB, height: int, block: Block, report: Report) -> None:
    hashes = [sha256(raw) for raw in block.txs]
    report.txs_checked += len(hashes)
    for tx_hash, raw in zip(hashes, block.txs, strict=True):
        data = db.get_meta(tx_record_key(tx_hash))
        if data is None:
            report.problem(f"block {height}: tx {tx_hash.hex()[:16]}: no tx record (result) stored")
            continue
        try:
            stored_raw, result = decode_tx_record(data)
        except (DecodeError, ValueError, TypeError) as exc:
            report.problem(f"block {height}: tx {tx_hash.hex()[:16]}: tx record does not decode: {exc}")
            continue
        if stored_raw != raw or result["hash"] != tx_hash:
            report.problem(f"block {height}: tx {tx_hash.hex()[:16]}: tx record names another tx")
    try:
        refs = db.txs.by_height(height)
    except StorageError as exc:
        report.problem(f"block {height}: tx index: {exc}")
        return
    if [(r.index, r.tx_hash) for r in refs] != list(enumerate(hashes)):
        report.problem(f"block {height}: the block's tx index entries do not match its txs")
    for index, tx_hash in enumerate(hashes):
        try:
            location = db.txs.by_hash(tx_hash)
        except StorageError as exc:
            report.problem(f"block {height}: tx {tx_hash.hex()[:16]}: {exc}")
            continue
        if location is None or (location.height, location.index) != (height, index):
            where = "missing" if location is None else f"at {location.height}/{location.index}"
            report.problem(f"block {height}: tx {tx_hash.hex()[:16]} is indexed {where}, "
                           f"expected {height}/{index}")


def _check_list_indexes(db: ChainDB, report: Report) -> None:
    """Every account and type index entry names a tx that is at that (height, position)."""
    for prefix, what in ((SUB_ACCOUNT, "account"), (SUB_TYPE, "type")):
        for key, tx_hash in db.store.iterate(prefix):
            height, index = read_u64(key, len(key) - 12), read_u32(key, len(key) - 4)
            location = db.store.get(SUB_HASH + tx_hash)
            if location is None or len(location) != 16 or \
                    (read_u64(location), read_u32(location, 8)) != (height, index):
                report.problem(f"{what} index: entry {key.hex()[:48]} names tx "
                               f"{tx_hash.hex()[:16]}, which is not at {height}/{index}")


def _check_state(db: ChainDB, app_hash: bytes, report: Report) -> None:
    report.app_hash = app_hash.hex()
    tree_root = vm.app_hash_of(db.state)
    if tree_root != app_hash:
        report.problem(f"state: the stored app-hash tree gives {tree_root.hex()[:16]}, the "
                       f"state record says {app_hash.hex()[:16]}")
    report.state_keys = sum(1 for _ in db.state.iterate(b""))
    recomputed = vm.recompute_app_hash(db.state)
    if recomputed != app_hash:
        report.problem(f"state: recomputing the app hash from every stored value gives "
                       f"{recomputed.hex()[:16]}, not {app_hash.hex()[:16]}")
    # the app hash leaves the expiry index out because it is a function of the orders:
    # a store where it is not would expire orders differently from the network
    stored = dict(db.state.iterate(EXPIRY))
    try:
        expected = expected_expiry_index(db.state)
    except Exception as exc:  # noqa: BLE001 - a malformed order record, of any kind
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        report.problem(f"state: an order record does not decode ({detail})")
        return
    if stored != expected:
        wrong = sorted(set(stored.items()) ^ set(expected.items()))
        report.problem(f"state: the expiry index disagrees with the orders (differences: "
                       f"{len(wrong)}, the first at key {wrong[0][0].hex()})")


def _check_files(home: Home, report: Report) -> None:
    wal_path = home.wal_file
    if wal_path.exists():
        data = wal_path.read_bytes()
        if len(data) >= len(MAGIC) and data[:len(MAGIC)] != MAGIC:
            report.problem(f"wal: {wal_path} does not start with the WAL magic")
        elif len(data) >= len(MAGIC):
            # A torn tail is normal after a crash (the node truncates it on start); a frame
            # of an unknown kind is not.
            try:
                _scan(data, DEFAULT_MAX_RECORD)
            except StorageError as exc:
                report.problem(f"wal: {exc}")
    try:
        SigningStateFile(home.signing_state_file).load()
    except (SigningStateError, OSError) as exc:
        report.problem(f"signing state: {exc}")


def render(report: Report) -> str:
    """The human report: a summary line, then one line per problem."""
    top = "no blocks" if report.latest_height is None else \
        f"heights {report.initial_height}..{report.latest_height}"
    lines = [f"{report.home}: {top}, {report.blocks_checked} blocks, {report.txs_checked} txs, "
             f"{report.state_keys} state keys checked"]
    if report.ok:
        lines.append("ok: no problems found")
    else:
        lines.append(f"{len(report.problems) + report.truncated} problem(s):")
        lines += [f"  - {p}" for p in report.problems]
        if report.truncated:
            lines.append(f"  ... and {report.truncated} more")
    return "\n".join(lines)
