"""What several commands share: captured-message lines, the policies, the key, the engine."""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import sys
from pathlib import Path
from typing import TypeAlias

import msgspec

from gateway.engine import Engine
from gateway.policy.loader import DEFAULT_DIR, LoadedPolicy, load_dir
from gateway.route.router import Router, load_registry
from gateway.route.topics import TopicScheme
from gateway.transforms.pseudonymize import MASTER_KEY_ENV, KeyError_, KeyRing, parse_master

Sub: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class Capture(msgspec.Struct, forbid_unknown_fields=False):
    """One captured MQTT message: `payload` is the JSON payload itself or a string of it;
    `payload_b64` carries payloads that are not text."""

    topic: str
    # Raw keeps the payload's exact bytes (duplicate keys included) for the decoder to judge.
    payload: msgspec.Raw = msgspec.Raw(b"")
    payload_b64: str | None = None


def payload_of(c: Capture) -> bytes:
    if c.payload_b64 is not None:
        return base64.b64decode(c.payload_b64, validate=True)
    raw = bytes(c.payload)
    if not raw:
        raise ValueError("no payload")
    if raw[:1] == b'"':
        return msgspec.json.decode(raw, type=str).encode()
    return raw


def policies(arg: Path | None) -> dict[str, LoadedPolicy]:
    return load_dir(arg or DEFAULT_DIR)


def keyring(key_file: Path | None) -> KeyRing:
    if key_file is not None:
        try:
            text = key_file.read_text()
        except OSError as exc:
            raise KeyError_(f"--key-file {key_file}: cannot read: {exc.strerror}") from None
        try:
            return KeyRing(parse_master(text))
        except KeyError_ as exc:
            raise KeyError_(f"--key-file {key_file}: {exc}") from None
    env = os.environ.get(MASTER_KEY_ENV)
    if env:
        try:
            return KeyRing(parse_master(env))
        except KeyError_ as exc:
            raise KeyError_(f"${MASTER_KEY_ENV}: {exc}") from None
    print(
        f"gateway: no --key-file and no {MASTER_KEY_ENV}: using a random key; pseudonyms "
        "will differ from run to run",
        file=sys.stderr,
    )
    return KeyRing(secrets.token_bytes(32))


def engine(args: argparse.Namespace) -> Engine:
    registry = load_registry(args.registry) if args.registry else None
    return Engine(
        policies(args.policies),
        keyring(args.key_file),
        Router(args.region, registry),
        topics=TopicScheme(args.topic_pattern),
    )


def add_engine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--policies", type=Path, help="policy directory (default: the shipped ones)")
    p.add_argument(
        "--region",
        default="us",
        help="deployment default region for devices not in the registry (default: us)",
    )
    p.add_argument("--registry", type=Path, help="TOML file: [devices] device id = region")
    p.add_argument(
        "--key-file",
        type=Path,
        help=f"hex master key file (else ${MASTER_KEY_ENV}, else a random key)",
    )
    p.add_argument(
        "--topic-pattern",
        default="miot/{product}/{device}/{kind}",
        help="topic layout (default: miot/{product}/{device}/{kind})",
    )


def add_global_args(p: argparse.ArgumentParser, default: object) -> None:
    p.add_argument("-v", "--verbose", action="store_true", default=default, help="debug logging")
    p.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=default if default is argparse.SUPPRESS else "text",
        help="log lines as text (default) or JSON, one object per line",
    )


# Accepted after the subcommand too; SUPPRESS keeps a value given before it from being reset.
GLOBAL = argparse.ArgumentParser(add_help=False)
add_global_args(GLOBAL, argparse.SUPPRESS)


def command(sub: Sub, name: str, help: str) -> argparse.ArgumentParser:
    # The one-line help doubles as the description `gateway <command> --help` shows.
    p: argparse.ArgumentParser = sub.add_parser(name, help=help, description=help, parents=[GLOBAL])
    return p
