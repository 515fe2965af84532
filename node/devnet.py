"""`make run`: a one-validator dev chain in ./.devnet, created on first use.

The dev home has funded keys merchant, buyer and arbiter stored WITHOUT passphrases:
for local use only.
"""

from __future__ import annotations

import sys
from pathlib import Path

DEV_HOME = Path(".devnet")
CHAIN_ID = "chainmerce-dev"


def main() -> int:
    from node.config import load_config, parse_host_port
    from node.home import Home, HomeError, init_home

    home = Home(DEV_HOME)
    if not home.is_initialized():
        try:
            init_home(DEV_HOME, CHAIN_ID, dev=True, moniker="devnet")
        except HomeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"created a dev chain in {DEV_HOME}/ (keys merchant, buyer, arbiter: "
              "unencrypted, local use only)")
    host, port = parse_host_port(load_config(home.config_file).get("rpc", "listen"))
    cli = ".venv/bin/chainmerce"
    print(f"""
chainmerce devnet: JSON-RPC at http://{host}:{port}  (Ctrl-C stops; state is kept in {DEV_HOME}/)

In a second terminal, try:
  {cli} tx list --home {DEV_HOME} --from merchant --title "Espresso cup" --price 1500 --quantity 10 --origin "Porto, PT"
  {cli} tx buy --home {DEV_HOME} --from buyer --listing 1 --quantity 1
  {cli} query order 1 --home {DEV_HOME}
""", flush=True)
    from cli import main as cli_main

    return cli_main(["start", "--home", str(DEV_HOME)], standalone_mode=True) or 0


if __name__ == "__main__":
    sys.exit(main())
