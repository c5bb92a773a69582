"""`gateway held list|replay|purge`: the records no sink may receive yet, never their values."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gateway.cli.common import Sub, command
from gateway.transforms.pseudonymize import KeyRing


def cmd_held(args: argparse.Namespace) -> int:
    from gateway.config import load_config
    from gateway.held import tool
    from gateway.keys import load_master

    config = load_config(args.config)
    keys = KeyRing(load_master(Path(config.state_dir), config.keys, create=False))
    try:
        if args.action == "list":
            return tool.held_list(config, keys)
        if args.action == "purge":
            return tool.held_purge(config, keys, args.product)
        return tool.held_replay(config, keys)
    except tool.HeldToolError as exc:
        print(f"gateway held: {exc}", file=sys.stderr)
        return 2


def add_commands(sub: Sub) -> None:
    p = command(
        sub,
        "held",
        help="records held because no sink may receive them: list (counts per product, region "
        "and kind), replay to sinks configured since, purge; run while the gateway is stopped",
    )
    p.add_argument("action", choices=("list", "replay", "purge"))
    p.add_argument("--config", type=Path, help="gateway.toml (default: embedded defaults)")
    p.add_argument("--product", help="purge: only this product's records")
    p.set_defaults(func=cmd_held)
