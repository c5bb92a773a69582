"""Commands that turn what the gateway counted into documents: report."""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway.cli.common import Sub, command, policies


def cmd_report(args: argparse.Namespace) -> int:
    from gateway.report import write_report

    write_report(args.metrics, args.out, policies(args.policies))
    print(args.out)
    return 0


def add_commands(sub: Sub) -> None:
    p = command(sub, "report", help="HTML compliance report per product from a metrics scrape")
    p.add_argument("--metrics", required=True, help="URL of /metrics or a file with its text")
    p.add_argument("--policies", type=Path)
    p.add_argument("--out", type=Path, default=Path("report.html"))
    p.set_defaults(func=cmd_report)
