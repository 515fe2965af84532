"""The `chainmerce` command: parses, calls node/ or the RPC client, prints.

Errors are one line on stderr and a non-zero exit code; `--json` prints machine output.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

DEFAULT_HOME = os.environ.get("CHAINMERCE_HOME", str(Path.home() / ".chainmerce"))
EXIT_ERROR = 1


class UserError(click.ClickException):
    """An error the user can act on: printed as one line, exit code 1."""

    def show(self, file=None) -> None:
        click.echo(f"error: {self.message}", err=True)


def _known_errors() -> tuple[type[BaseException], ...]:
    from consensus.errors import ConsensusError
    from core.errors import CoreError
    from node.app import AppFault
    from node.client import ClientError
    from node.config import ConfigError
    from node.genesis import GenesisError
    from node.home import HomeError
    from node.keystore import KeystoreError
    from storage.errors import StorageError

    return (CoreError, ClientError, ConfigError, KeystoreError, StorageError, HomeError,
            GenesisError, AppFault, ConsensusError, ValueError, OSError)


class Group(click.Group):
    """Turns every known error into one line instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except _known_errors() as exc:
            raise UserError(_one_line(exc)) from None


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    data = getattr(exc, "data", None)
    if isinstance(data, dict) and data.get("name") and getattr(exc, "code", None) is not None:
        text += f" [{data['name']}, code {exc.code}]"  # the stable code scripts can match
    return " ".join(text.split())


def emit(ctx_json: bool, data: Any, human: str | None = None) -> None:
    if ctx_json:
        click.echo(json.dumps(data, indent=2, sort_keys=False))
    else:
        click.echo(human if human is not None else _render(data))


def _render(data: Any, indent: int = 0) -> str:
    pad = "  " * indent
    if isinstance(data, dict):
        lines = []
        for key, value in data.items():
            if isinstance(value, (dict, list)) and value:
                lines.append(f"{pad}{key}:")
                lines.append(_render(value, indent + 1))
            else:
                lines.append(f"{pad}{key}: {value if value != [] else '(none)'}")
        return "\n".join(lines)
    if isinstance(data, list):
        return "\n".join(
            (f"{pad}-\n{_render(item, indent + 1)}" if isinstance(item, (dict, list))
             else f"{pad}- {item}") for item in data)
    return f"{pad}{data}"


home_option = click.option("--home", default=DEFAULT_HOME, show_default=True,
                           type=click.Path(file_okay=False), help="Node home directory.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
passphrase_option = click.option("--passphrase-file", type=click.Path(dir_okay=False),
                                 help="File whose first line is the key's passphrase.")


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """chainmerce: a proof-of-authority chain that natively runs e-commerce."""


@main.command()
@json_option
def version(as_json: bool) -> None:
    """Print the version."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        v = dist_version("chainmerce")
    except PackageNotFoundError:
        v = "unknown"
    emit(as_json, {"version": v}, f"chainmerce {v}")


# --- keys -------------------------------------------------------------------------------------


@main.group(cls=Group)
def keys() -> None:
    """Manage the passphrase-encrypted keys in <home>/keyring."""


def _keystore(home: str):
    from node.keystore import Keystore

    return Keystore(home)


@keys.command("new")
@click.argument("name")
@home_option
@passphrase_option
@click.option("--insecure-no-passphrase", is_flag=True,
              help="Store the key unencrypted (throwaway dev networks only).")
@json_option
def keys_new(name, home, passphrase_file, insecure_no_passphrase, as_json) -> None:
    """Create a new key NAME."""
    from node.keystore import resolve_passphrase

    passphrase = None
    if not insecure_no_passphrase:
        passphrase = resolve_passphrase(passphrase_file, confirm=True)
    info = _keystore(home).create(name, passphrase, encrypted=not insecure_no_passphrase)
    emit(as_json, info.to_json(), f"created key {info.name}: {info.address}")


@keys.command("list")
@home_option
@json_option
def keys_list(home, as_json) -> None:
    """List the keys in the keyring."""
    infos = _keystore(home).list_keys()
    human = "\n".join(f"{i.name:<16} {i.address}{'' if i.encrypted else '  (unencrypted)'}"
                      for i in infos) or "no keys"
    emit(as_json, [i.to_json() for i in infos], human)


@keys.command("show")
@click.argument("name")
@home_option
@json_option
def keys_show(name, home, as_json) -> None:
    """Show a key's address and public key."""
    emit(as_json, _keystore(home).show(name).to_json())


@keys.command("import")
@click.argument("name")
@home_option
@passphrase_option
@click.option("--seed-file", type=click.Path(dir_okay=False), required=True,
              help="File holding the 32-byte seed as hex.")
@json_option
def keys_import(name, home, passphrase_file, seed_file, as_json) -> None:
    """Import a key NAME from a hex seed file."""
    from node.keystore import resolve_passphrase

    seed_hex = Path(seed_file).read_text().strip()
    passphrase = resolve_passphrase(passphrase_file, confirm=True)
    info = _keystore(home).import_seed(name, seed_hex, passphrase)
    emit(as_json, info.to_json(), f"imported key {info.name}: {info.address}")


@keys.command("export")
@click.argument("name")
@home_option
@passphrase_option
@json_option
def keys_export(name, home, passphrase_file, as_json) -> None:
    """Print a key's seed as hex (after its passphrase opens it). Keep it secret."""
    from node.keystore import resolve_passphrase

    store = _keystore(home)
    passphrase = resolve_passphrase(passphrase_file) if store.show(name).encrypted else None
    seed = store.export_seed(name, passphrase)
    emit(as_json, {"name": name, "seed": seed}, seed)


# --- init / start ---------------------------------------------------------------------------


@main.command()
@home_option
@click.option("--chain-id", default="chainmerce-dev", show_default=True, help="Chain id.")
@click.option("--moniker", help="Human name of this node (default: the home's name).")
@click.option("--dev", is_flag=True,
              help="Also create funded keys merchant, buyer and arbiter WITHOUT passphrases "
                   "(insecure; local use only).")
@click.option("--rpc-listen", help="host:port of the JSON-RPC server (default 127.0.0.1:26657).")
@click.option("--p2p-listen", help="host:port for peer connections (default 127.0.0.1:26656).")
@json_option
def init(home, chain_id, moniker, dev, rpc_listen, p2p_listen, as_json) -> None:
    """Create a node home: config, genesis, node key and validator key."""
    from node.home import init_home

    overrides = {("rpc", "listen"): rpc_listen} if rpc_listen else {}
    if p2p_listen:
        overrides[("p2p", "listen")] = p2p_listen
    info = init_home(Path(home), chain_id, dev=dev, moniker=moniker, config_overrides=overrides)
    human = [f"initialized {info['home']} for chain {info['chain_id']}",
             f"validator: {info['validator_address']}"]
    human += [f"dev key {n}: {a}  (unencrypted)" for n, a in info["dev_accounts"].items()]
    emit(as_json, info, "\n".join(human))


@main.command()
@home_option
def start(home) -> None:
    """Run the node in the foreground until SIGTERM or Ctrl-C."""
    import asyncio

    from node.config import load_config
    from node.home import Home
    from node.logs import setup_logging
    from node.node import run_node

    h = Home(Path(home))
    if not h.is_initialized():
        raise UserError(f"{home} is not a node home: run `chainmerce init --home {home}` first")
    config = load_config(h.config_file)
    setup_logging(config.get("node", "log_level"), config.get("node", "log_format"))
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # uvloop is optional on platforms without it
        runner = asyncio.run
    code = runner(run_node(Path(home)))
    sys.exit(code)


@main.command()
@home_option
@click.option("--full", is_flag=True, help="Also check every account and type index entry.")
@json_option
def doctor(home, full, as_json) -> None:
    """Check a stopped node's data: blocks, commits, app hash, indexes, WAL, signing state.

    Exits 0 when clean, 1 when a problem is found (one line each)."""
    from node.doctor import DoctorError, check_home, render

    try:
        report = check_home(Path(home), full=full)
    except DoctorError as exc:
        raise UserError(str(exc)) from None
    emit(as_json, report.to_dict(), render(report))
    sys.exit(0 if report.ok else EXIT_ERROR)


# --- testnet / localnet -----------------------------------------------------------------------


@main.command()
@click.option("--validators", "-v", type=int, required=True, help="Number of validators.")
@click.option("--full-nodes", type=int, default=0, show_default=True,
              help="Number of full (non-validator) nodes.")
@click.option("--chain-id", default="chainmerce-localnet", show_default=True, help="Chain id.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Directory to create (must not exist or be empty).")
@click.option("--base-port", type=int, default=26600, show_default=True,
              help="Node i listens on 127.0.0.1: RPC base+2i, p2p base+2i+1.")
@json_option
def testnet(validators, full_nodes, chain_id, out, base_port, as_json) -> None:
    """Write the homes of a local network: one genesis, loopback ports, peers wired."""
    from node.testnet import TestnetError, generate_testnet

    try:
        manifest = generate_testnet(Path(out), validators, full_nodes, chain_id=chain_id,
                                    base_port=base_port)
    except TestnetError as exc:
        raise UserError(_one_line(exc)) from None
    data = {"out": str(manifest.root), **manifest.to_dict()}
    human = [f"wrote {len(manifest.nodes)} node homes in {manifest.root} "
             f"(chain {manifest.chain_id})"]
    human += [f"  {n.name}  {n.role:<9}  rpc {n.rpc_url}  p2p {n.p2p_port}  id {n.node_id}"
              for n in manifest.nodes]
    human.append(f"start them with: chainmerce localnet up --dir {manifest.root}")
    emit(as_json, data, "\n".join(human))


@main.group(cls=Group)
def localnet() -> None:
    """Run the nodes of a `chainmerce testnet` directory as local background processes."""


dir_option = click.option("--dir", "root", required=True, type=click.Path(file_okay=False),
                          help="The testnet directory (from `chainmerce testnet --out`).")
names_option = click.option("--node", "names", multiple=True,
                            help="Only this node (e.g. node2); repeatable. Default: all.")


def _localnet_call(fn, *args, **kwargs):
    from node.localnet import LocalnetError
    from node.testnet import TestnetError

    try:
        return fn(*args, **kwargs)
    except (LocalnetError, TestnetError) as exc:
        raise UserError(_one_line(exc)) from None


@localnet.command("up")
@dir_option
@names_option
@click.option("--timeout", type=float, default=30.0, show_default=True,
              help="Seconds to wait for each node's RPC to answer.")
@json_option
def localnet_up(root, names, timeout, as_json) -> None:
    """Start every node (detached; logs in DIR/nodeI/node.log) and wait for its RPC."""
    from node import localnet as ln

    report = (lambda _line: None) if as_json else click.echo
    rows = _localnet_call(ln.up, Path(root), list(names), timeout=timeout, report=report)
    if as_json:
        emit(True, rows)


@localnet.command("down")
@dir_option
@names_option
@click.option("--grace", type=float, default=10.0, show_default=True,
              help="Seconds between SIGTERM and kill -9.")
@json_option
def localnet_down(root, names, grace, as_json) -> None:
    """Stop the nodes: SIGTERM, then kill -9 after the grace period; remove pid files."""
    from node import localnet as ln

    report = (lambda _line: None) if as_json else click.echo
    rows = _localnet_call(ln.down, Path(root), list(names), grace=grace, report=report)
    if as_json:
        emit(True, rows)


@localnet.command("status")
@dir_option
@json_option
def localnet_status(root, as_json) -> None:
    """A table of the nodes: pid alive, height, peers, role."""
    from node import localnet as ln

    rows = _localnet_call(ln.status, Path(root))
    emit(as_json, rows, ln.status_table(rows))


# --- shared helpers for tx and query --------------------------------------------------------


def _node_url(home: str, node: str | None) -> str:
    if node:
        return node
    from node.config import load_config, parse_host_port
    from node.home import Home

    h = Home(Path(home))
    if h.config_file.exists():
        host, port = parse_host_port(load_config(h.config_file).get("rpc", "listen"))
        return f"http://{host}:{port}"
    from node.client import DEFAULT_URL

    return DEFAULT_URL


def _client(home: str, node: str | None):
    from node.client import Client

    return Client(_node_url(home, node))


def _address(home: str, value: str) -> str:
    """An address text, or the name of a key in the home's keyring."""
    from core.address import address_from_text

    if value.lower().startswith("cm1"):
        address_from_text(value)  # refuse typos before anything is signed
        return value
    return _keystore(home).show(value).address


node_option = click.option("--node", "node_url", help="RPC URL of the node (default: from --home).")


# --- tx ---------------------------------------------------------------------------------------

# name -> (type name, [(option, kind, required, help)], body builder)
# kinds: int, str, addr (address or key name), hex
TX_FIELDS: dict[str, tuple[str, list[tuple[str, str, bool, str]]]] = {
    "transfer": ("transfer", [("to", "addr", True, "recipient"),
                              ("amount", "int", True, "amount")]),
    "list": ("list", [("listing", "int", False, "listing id to update (omit to create)"),
                      ("title", "str", True, "title"), ("price", "int", True, "unit price"),
                      ("quantity", "int", True, "units available"),
                      ("ship-within", "int", False, "blocks to ship in (0: chain default)"),
                      ("confirm-within", "int", False, "blocks to confirm in (0: default)"),
                      ("origin", "str", False, "provenance: where and by whom it was made"),
                      ("metadata", "hex", False, "metadata bytes as hex")]),
    "delist": ("delist", [("listing", "int", True, "listing id")]),
    "buy": ("buy", [("listing", "int", True, "listing id"),
                    ("quantity", "int", False, "units (default 1)"),
                    ("max-price", "int", False, "refuse if the unit price is above this "
                                                "(default: the current price)"),
                    ("referrer", "addr", False, "who referred you (earns a referral reward)")]),
    "ship": ("ship", [("order", "int", True, "order id"), ("carrier", "str", True, "carrier"),
                      ("tracking", "str", True, "tracking id"),
                      ("carrier-address", "addr", False, "carrier account allowed to track"),
                      ("location", "str", False, "where it left from"),
                      ("note", "str", False, "note")]),
    "track": ("track", [("order", "int", True, "order id"),
                        ("location", "str", True, "checkpoint location"),
                        ("note", "str", False, "note")]),
    "confirm": ("confirm", [("order", "int", True, "order id")]),
    "cancel": ("cancel", [("order", "int", True, "order id")]),
    "refund": ("refund", [("order", "int", True, "order id"), ("reason", "str", False, "why")]),
    "dispute": ("dispute", [("order", "int", True, "order id"),
                            ("reason", "str", True, "what went wrong")]),
    "resolve": ("resolve", [("order", "int", True, "order id"),
                            ("buyer-amount", "int", True, "escrow share returned to the buyer"),
                            ("note", "str", False, "ruling")]),
    "review": ("review", [("order", "int", True, "order id"),
                          ("rating", "int", True, "1 to 5"), ("text", "str", False, "review")]),
    "reward": ("reward", [("order", "int", True, "order id whose buyer is rewarded"),
                          ("amount", "int", True, "amount"), ("memo", "str", False, "memo")]),
    "validator-vote": ("validator_vote", [
        ("action", "str", True, "add, remove or set-power"),
        ("pub-key", "hex", True, "validator public key (hex)"),
        ("power", "int", False, "voting power (0 for remove)")]),
}


def _tx_body(home: str, client, command: str, v: dict[str, Any]) -> list[Any]:
    from core.address import address_from_text

    def addr(value):
        return None if value is None else address_from_text(_address(home, value))

    def text(name):
        return v.get(name) or ""

    if command == "transfer":
        return [addr(v["to"]), v["amount"]]
    if command == "list":
        return [v.get("listing") or 0, v["title"], v["price"], v["quantity"],
                v.get("ship_within") or 0, v.get("confirm_within") or 0, text("origin"),
                v.get("metadata") or b""]
    if command == "delist":
        return [v["listing"]]
    if command == "buy":
        max_price = v.get("max_price")
        if max_price is None:
            max_price = client.call("listing", id=v["listing"])["price"]
        return [v["listing"], v.get("quantity") or 1, max_price, addr(v.get("referrer"))]
    if command == "ship":
        return [v["order"], v["carrier"], v["tracking"], addr(v.get("carrier_address")),
                text("location"), text("note")]
    if command == "track":
        return [v["order"], v["location"], text("note")]
    if command in ("confirm", "cancel"):
        return [v["order"]]
    if command in ("refund", "dispute"):
        return [v["order"], text("reason")]
    if command == "resolve":
        return [v["order"], v["buyer_amount"], text("note")]
    if command == "review":
        return [v["order"], v["rating"], text("text")]
    if command == "reward":
        return [v["order"], v["amount"], text("memo")]
    actions = {"add": 1, "remove": 2, "set-power": 3}
    if v["action"] not in actions:
        raise UserError("--action must be add, remove or set-power")
    return [actions[v["action"]], v["pub_key"], v.get("power") or 0]


def _hex(_ctx, _param, value):
    if value is None:
        return None
    try:
        return bytes.fromhex(value[2:] if value.startswith("0x") else value)
    except ValueError:
        raise click.BadParameter("expected hex") from None


@main.group(cls=Group)
def tx() -> None:
    """Sign a transaction with a keyring key, submit it, and wait for the commit."""


def _make_tx_command(command: str, type_name: str, fields: list[tuple[str, str, bool, str]]):
    @home_option
    @click.option("--from", "from_key", required=True, help="Keyring key that signs.")
    @click.option("--fee", type=int, help="Fee (default: the chain's minimum for this type).")
    @click.option("--nonce", type=int, help="Nonce (default: the account's next nonce).")
    @click.option("--no-wait", is_flag=True, help="Return after the mempool accepts the tx.")
    @passphrase_option
    @node_option
    @json_option
    def run(home, from_key, fee, nonce, no_wait, passphrase_file, node_url, as_json, **values):
        _send_tx(home, node_url, command, type_name, from_key, fee, nonce, no_wait,
                 passphrase_file, as_json, values)

    for option, kind, required, help_text in reversed(fields):
        click_type = {"int": click.IntRange(min=0), "str": str, "addr": str, "hex": str}[kind]
        extra = {"callback": _hex} if kind == "hex" else {}
        run = click.option(f"--{option}", type=click_type, required=required, help=help_text,
                           **extra)(run)
    run.__doc__ = f"Submit a {type_name} transaction."
    return tx.command(command)(run)


for _name, (_type, _fields) in TX_FIELDS.items():
    _make_tx_command(_name, _type, _fields)


def _send_tx(home, node_url, command, type_name, from_key, fee, nonce, no_wait,
             passphrase_file, as_json, values) -> None:
    from commerce_vm import sign_tx
    from commerce_vm import txtypes as T
    from node.keystore import resolve_passphrase

    store = _keystore(home)
    info = store.show(from_key)
    passphrase = resolve_passphrase(passphrase_file) if info.encrypted else None
    key = store.load(from_key, passphrase)
    client = _client(home, node_url)
    chain_id = client.call("status")["node_info"]["chain_id"]
    if fee is None:
        fee = client.call("params")["min_fees"][type_name]
    if nonce is None:
        nonce = client.call("account", address=info.address)["next_nonce"]
    body = _tx_body(home, client, command, values)
    raw = sign_tx(key, chain_id, T.TYPE_CODES[type_name], nonce, fee, body)
    if no_wait:
        answer = client.call("broadcast_tx_sync", tx=raw.hex())
        parked = answer.get("status") == "parked"
        emit(as_json, answer, f"submitted tx {answer['hash']}" + (
            f" (parked: waiting for nonce {answer['waiting_for_nonce']})" if parked else ""))
        return
    answer = client.call("broadcast_tx_commit", tx=raw.hex())
    human = [f"tx {answer['hash']}", f"height: {answer['height']}",
             f"result: {answer['name']}" + (f" ({answer['code']}): {answer['message']}"
                                            if answer["code"] else "")]
    for event in answer.get("events", []):
        attrs = event["attributes"]
        if event["kind"] == "listing_created":
            human.append(f"listing id: {attrs['listing_id']}")
        elif event["kind"] == "order_created":
            human.append(f"order id: {attrs['order_id']}")
    emit(as_json, answer, "\n".join(human))
    if answer["code"] != 0:
        sys.exit(EXIT_ERROR)


# --- query ------------------------------------------------------------------------------------


@main.group(cls=Group)
def query() -> None:
    """Read chain state over JSON-RPC."""


def _query_command(name: str, help_text: str):
    def decorate(fn):
        fn = json_option(node_option(home_option(fn)))
        fn.__doc__ = help_text
        return query.command(name)(fn)
    return decorate


@_query_command("account", "Balance and nonce of an address or keyring key.")
@click.argument("who")
def query_account(who, home, node_url, as_json):
    emit(as_json, _client(home, node_url).call("account", address=_address(home, who)))


@_query_command("listing", "One listing.")
@click.argument("listing_id", type=click.IntRange(min=1))
def query_listing(listing_id, home, node_url, as_json):
    emit(as_json, _client(home, node_url).call("listing", id=listing_id))


@_query_command("listings", "Listings, optionally of one merchant.")
@click.option("--merchant")
@click.option("--limit", type=click.IntRange(1, 100), default=20)
@click.option("--cursor", type=int)
def query_listings(merchant, limit, cursor, home, node_url, as_json):
    merchant = _address(home, merchant) if merchant else None
    emit(as_json, _client(home, node_url).call("listings", merchant=merchant, limit=limit,
                                               cursor=cursor))


@_query_command("order", "One order.")
@click.argument("order_id", type=click.IntRange(min=1))
def query_order(order_id, home, node_url, as_json):
    emit(as_json, _client(home, node_url).call("order", id=order_id))


@_query_command("orders", "Orders of a buyer, a merchant or a listing.")
@click.option("--buyer")
@click.option("--merchant")
@click.option("--listing", type=click.IntRange(min=1))
@click.option("--limit", type=click.IntRange(1, 100), default=20)
@click.option("--cursor", type=int)
def query_orders(buyer, merchant, listing, limit, cursor, home, node_url, as_json):
    emit(as_json, _client(home, node_url).call(
        "orders", buyer=_address(home, buyer) if buyer else None,
        merchant=_address(home, merchant) if merchant else None, listing=listing, limit=limit,
        cursor=cursor))


@_query_command("reviews", "Reviews of a merchant or a listing.")
@click.option("--merchant")
@click.option("--listing", type=click.IntRange(min=1))
@click.option("--limit", type=click.IntRange(1, 100), default=20)
def query_reviews(merchant, listing, limit, home, node_url, as_json):
    emit(as_json, _client(home, node_url).call(
        "reviews", merchant=_address(home, merchant) if merchant else None, listing=listing,
        limit=limit))


@_query_command("reputation", "A merchant's reputation.")
@click.argument("merchant")
def query_reputation(merchant, home, node_url, as_json):
    emit(as_json, _client(home, node_url).call("reputation", merchant=_address(home, merchant)))


@_query_command("provenance", "An order's provenance trail.")
@click.argument("order_id", type=click.IntRange(min=1))
def query_provenance(order_id, home, node_url, as_json):
    emit(as_json, _client(home, node_url).call("provenance", order=order_id))


@_query_command("block", "A block (latest when HEIGHT is omitted).")
@click.argument("height", type=click.IntRange(min=1), required=False)
def query_block(height, home, node_url, as_json):
    emit(as_json, _client(home, node_url).call("block", height=height))


@_query_command("tx", "A committed tx by hash.")
@click.argument("tx_hash")
@click.option("--prove", is_flag=True, help="Include a Merkle inclusion proof.")
def query_tx(tx_hash, prove, home, node_url, as_json):
    emit(as_json, _client(home, node_url).call("tx", hash=tx_hash, prove=prove))


@_query_command("status", "Node status.")
def query_status(home, node_url, as_json):
    emit(as_json, _client(home, node_url).call("status"))


@_query_command("validators", "The validator set.")
@click.argument("height", type=click.IntRange(min=1), required=False)
def query_validators(height, home, node_url, as_json):
    emit(as_json, _client(home, node_url).call("validators", height=height))


if __name__ == "__main__":
    main()
