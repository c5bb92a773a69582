"""`gateway` command line: one module per command group, errors as one line each."""

from __future__ import annotations

import argparse
import sys

from gateway import logs
from gateway.brokers import BrokerError
from gateway.cli import held, policies, report, service
from gateway.cli.common import add_global_args
from gateway.config import ConfigError, StartupError
from gateway.policy.loader import PolicyError
from gateway.report.scrape import ReportError
from gateway.route.router import RegistryError
from gateway.route.topics import TopicError
from gateway.transforms.pseudonymize import KeyError_
from gateway.version import VERSION

# Mistakes an operator can make: their message is the whole story, no traceback.
OPERATOR_ERRORS: tuple[type[Exception], ...] = (
    PolicyError,  # PlanError is one
    RegistryError,
    TopicError,
    KeyError_,
    ConfigError,
    ReportError,
    BrokerError,
    StartupError,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gateway",
        description="Edge gateway that forwards only what each product's privacy policy declares.",
    )
    add_global_args(parser, False)
    parser.add_argument("--version", action="version", version=f"gateway {VERSION}")
    sub = parser.add_subparsers(dest="command", required=True)
    policies.add_commands(sub)
    service.add_commands(sub)
    held.add_commands(sub)
    report.add_commands(sub)
    return parser


def _fail(message: str) -> int:
    for line in message.splitlines() or [""]:
        print(f"gateway: {line}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.setup(args.verbose, args.log_format)
    try:
        return int(args.func(args))
    except OPERATOR_ERRORS as exc:
        return _fail(str(exc))
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        # A file or port the command was pointed at: its name and the reason, no traceback
        # (-v shows it).
        if args.verbose:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        return _fail(f"{where}{exc.strerror or type(exc).__name__}")


if __name__ == "__main__":
    sys.exit(main())
