"""Commands that turn policies and counts into documents: report, export."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gateway.cli.common import Sub, command, policies


def cmd_report(args: argparse.Namespace) -> int:
    from gateway.report import write_report

    if args.prometheus is not None:
        write_report(args.prometheus, args.out, policies(args.policies), window=args.range)
    else:
        write_report(args.metrics, args.out, policies(args.policies))
    print(args.out)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from gateway.export.fides import manifest

    doc = manifest(policies(args.policies))
    if args.out is None:
        sys.stdout.buffer.write(doc)
    else:
        args.out.write_bytes(doc)
        print(args.out)
    return 0


def add_commands(sub: Sub) -> None:
    p = command(
        sub,
        "report",
        help="HTML compliance report: per product, does what was forwarded match the published "
        "policy; from one gateway's metrics or from Prometheus (every replica)",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--metrics", help="URL of one gateway's /metrics, or a file with its text")
    src.add_argument("--prometheus", help="URL of a Prometheus server scraping the gateways")
    p.add_argument(
        "--range", default="24h", help="with --prometheus: the window counted (default: 24h)"
    )
    p.add_argument("--policies", type=Path)
    p.add_argument("--out", type=Path, default=Path("report.html"))
    p.set_defaults(func=cmd_report)

    p = command(
        sub,
        "export",
        help="the policies for other tools: --format fides writes a Fides system manifest "
        "(what leaves the gateway, in the Fideslang taxonomy)",
    )
    p.add_argument("--format", choices=("fides",), required=True)
    p.add_argument("--policies", type=Path)
    p.add_argument("--out", type=Path, help="file to write (default: stdout)")
    p.set_defaults(func=cmd_export)
