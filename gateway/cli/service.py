"""Commands that run or judge a deployment: run, validate, demo."""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway.cli.common import Sub, command


def cmd_run(args: argparse.Namespace) -> int:
    from gateway.supervisor import run_from_config

    return run_from_config(
        args.config,
        workers=args.workers,
        shadow=args.shadow,
        worker_index=args.worker_index,
        new_key=args.new_key,
    )


def cmd_validate(args: argparse.Namespace) -> int:
    from gateway.validate import validate

    problems = validate(args.config)
    for p in problems:
        print(p)
    errors = sum(1 for p in problems if p.level == "error")
    name = args.config or "embedded defaults"
    print(f"{name}: {'ok' if not errors else f'{errors} error(s)'}")
    return 1 if errors else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.demo import run_demo

    return run_demo(duration=args.duration, rate=args.rate, out=args.out)


def add_commands(sub: Sub) -> None:
    p = command(
        sub,
        "run",
        help="run the gateway service (MQTT in, regional sinks out); SIGHUP reloads "
        "the policies, SIGTERM stops after the current batch",
    )
    p.add_argument("--config", type=Path, help="gateway.toml (default: embedded defaults)")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes sharing the subscription (default: config, 1)",
    )
    p.add_argument(
        "--shadow", action="store_true", help="enforce and count, forward nothing (for rollout)"
    )
    p.add_argument(
        "--new-key",
        action="store_true",
        help="accept a master key other than the one the state dir was made with (pseudonyms "
        "change; spools and held records under the old key are set aside)",
    )
    p.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_run)

    p = command(
        sub,
        "validate",
        help="check a config without touching the network: settings, policies and their "
        "citations, TLS files, key, registry, sinks; every problem one line; exit 1 on errors",
    )
    p.add_argument("--config", type=Path, help="gateway.toml (default: embedded defaults)")
    p.set_defaults(func=cmd_validate)

    p = command(
        sub,
        "demo",
        help="a throwaway local mosquitto + a simulated fleet of the five products + the "
        "gateway on its defaults with file sinks, with a live summary",
    )
    p.add_argument("--duration", type=float, default=10.0, help="seconds (default: 10)")
    p.add_argument("--rate", type=float, default=200.0, help="messages/s (default: 200)")
    p.add_argument(
        "--out",
        type=Path,
        default=Path("out/demo"),
        help="output directory; must be empty or one an earlier demo made (default: out/demo)",
    )
    p.set_defaults(func=cmd_demo)
