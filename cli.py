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
    from core.errors import CoreError
    from node.client import ClientError
    from node.config import ConfigError
    from node.keystore import KeystoreError
    from storage.errors import StorageError

    return (CoreError, ClientError, ConfigError, KeystoreError, StorageError, ValueError, OSError)


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


if __name__ == "__main__":
    main()
