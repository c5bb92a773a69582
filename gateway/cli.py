"""`gateway` command line: check, enforce, explain, schemas, run, demo, report."""

from __future__ import annotations

import argparse
import base64
import logging
import os
import secrets
import sys
import time
from collections import Counter
from pathlib import Path

import msgspec

from gateway.config import ConfigError
from gateway.decode.plan import PlanError, compile_kind
from gateway.engine import Engine
from gateway.envelope import Held, Record, encode
from gateway.explain import message_decisions, policy_rows
from gateway.policy.lint import Finding, lint
from gateway.policy.loader import DEFAULT_DIR, LoadedPolicy, PolicyError, load_dir
from gateway.report.scrape import ReportError
from gateway.route.router import RegistryError, Router, load_registry
from gateway.route.topics import TopicError, TopicScheme
from gateway.schemas import write_schemas
from gateway.transforms.pseudonymize import MASTER_KEY_ENV, KeyError_, KeyRing, parse_master


class Capture(msgspec.Struct, forbid_unknown_fields=False):
    """One captured MQTT message: `payload` is the JSON payload itself or a string of it;
    `payload_b64` carries payloads that are not text."""

    topic: str
    # Raw keeps the payload's exact bytes (duplicate keys included) for the decoder to judge.
    payload: msgspec.Raw = msgspec.Raw(b"")
    payload_b64: str | None = None


def _payload(c: Capture) -> bytes:
    if c.payload_b64 is not None:
        return base64.b64decode(c.payload_b64, validate=True)
    raw = bytes(c.payload)
    if not raw:
        raise ValueError("no payload")
    if raw[:1] == b'"':
        return msgspec.json.decode(raw, type=str).encode()
    return raw


def _policies(arg: Path | None) -> dict[str, LoadedPolicy]:
    return load_dir(arg or DEFAULT_DIR)


def _keyring(key_file: Path | None) -> KeyRing:
    if key_file is not None:
        return KeyRing(parse_master(key_file.read_text()))
    env = os.environ.get(MASTER_KEY_ENV)
    if env:
        return KeyRing(parse_master(env))
    print(
        f"gateway: no --key-file and no {MASTER_KEY_ENV}: using a random key; pseudonyms "
        "will differ from run to run",
        file=sys.stderr,
    )
    return KeyRing(secrets.token_bytes(32))


def _engine(args: argparse.Namespace) -> Engine:
    registry = load_registry(args.registry) if args.registry else None
    return Engine(
        _policies(args.policies),
        _keyring(args.key_file),
        Router(args.region, registry),
        topics=TopicScheme(args.topic_pattern),
    )


def cmd_check(args: argparse.Namespace) -> int:
    policies = _policies(args.dir)
    errors = 0
    for pid, lp in policies.items():
        findings = lint(lp)
        for kind, rule in lp.policy.kinds.items():
            try:
                compile_kind(pid, kind, rule)
            except PlanError as exc:
                findings.append(Finding("error", f"{lp.path.name}:kinds.{kind}", str(exc)))
        for f in findings:
            print(f)
        n_err = sum(1 for f in findings if f.level == "error")
        n_fields = sum(len(r.fields) for r in lp.policy.kinds.values())
        status = "ok" if n_err == 0 else f"{n_err} error(s)"
        print(
            f"{lp.path.name}: {n_fields} fields in {len(lp.policy.kinds)} kinds, "
            f"regions {[r.id for r in lp.policy.regions]}: {status}"
        )
        errors += n_err
    return 1 if errors else 0


def cmd_enforce(args: argparse.Namespace) -> int:
    engine = _engine(args)
    out = sys.stdout.buffer
    dec = msgspec.json.Decoder(Capture)
    tally: Counter[str] = Counter()
    for n, line in enumerate(sys.stdin.buffer, 1):
        if not line.strip():
            continue
        try:
            cap = dec.decode(line)
            payload = _payload(cap)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError, UnicodeDecodeError):
            tally["rejected"] += 1
            out.write(b'{"rejected":{"reason":"invalid_capture","line":%d}}\n' % n)
            continue
        result = engine.process(cap.topic, payload, time.time())
        if isinstance(result, Record):
            tally["forwarded"] += 1
            out.write(encode(result) + b"\n")
        elif isinstance(result, Held):
            tally["held"] += 1
            out.write(b'{"held":' + encode(result.record) + b"}\n")
        else:
            tally["rejected"] += 1
            out.write(b'{"rejected":' + encode(result) + b"}\n")
    out.flush()
    print(
        f"gateway enforce: {tally['forwarded']} forwarded, {tally['held']} held, "
        f"{tally['rejected']} rejected",
        file=sys.stderr,
    )
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    if args.input is not None:
        engine = _engine(args)
        src = sys.stdin.buffer if str(args.input) == "-" else args.input.open("rb")
        dec = msgspec.json.Decoder(Capture)
        for n, line in enumerate(src, 1):
            if not line.strip():
                continue
            try:
                cap = dec.decode(line)
                d = message_decisions(engine, cap.topic, _payload(cap))
            except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
                d = {"reason": "invalid_capture"}
            sys.stdout.buffer.write(msgspec.json.encode({"line": n, **d}) + b"\n")
        return 0
    policies = _policies(args.policies)
    wanted = args.products or list(policies)
    unknown = [p for p in wanted if p not in policies]
    if unknown:
        print(
            f"gateway explain: unknown product(s) {unknown}; known: {sorted(policies)}",
            file=sys.stderr,
        )
        return 2
    cols = ("kind", "field", "category", "declared", "action", "consent", "cite")
    for pid in wanted:
        lp = policies[pid]
        print(
            f"# {pid}: {lp.policy.name} ({lp.policy.publisher}), regions "
            f"{[r.id for r in lp.policy.regions] or 'none: nothing leaves'}"
        )
        rows = list(policy_rows(lp))
        widths = [max(len(c), *(len(r[c]) for r in rows)) if rows else len(c) for c in cols]
        print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
        for r in rows:
            print("  ".join(r[c].ljust(w) for c, w in zip(cols, widths, strict=True)))
        print()
    return 0


def cmd_schemas(args: argparse.Namespace) -> int:
    for path in write_schemas(args.out, _policies(args.policies)):
        print(path)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from gateway.service import run_from_config

    return run_from_config(
        args.config,
        workers=args.workers,
        shadow=args.shadow,
        worker_index=args.worker_index,
        new_key=args.new_key,
    )


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


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.demo import run_demo

    return run_demo(duration=args.duration, rate=args.rate, out=args.out)


def cmd_report(args: argparse.Namespace) -> int:
    from gateway.report import write_report

    write_report(args.metrics, args.out, _policies(args.policies))
    print(args.out)
    return 0


def _add_engine_args(p: argparse.ArgumentParser) -> None:
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


def _command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help: str
) -> argparse.ArgumentParser:
    # The one-line help doubles as the description `gateway <command> --help` shows.
    return sub.add_parser(name, help=help, description=help)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gateway",
        description="Edge gateway that forwards only what each product's privacy policy declares.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = _command(
        sub,
        "check",
        help="lint policies: every forwarded field has purpose and citation; exit 1 on errors",
    )
    p.add_argument("dir", nargs="?", type=Path, help="policy directory (default: shipped)")
    p.set_defaults(func=cmd_check)

    p = _command(
        sub,
        "enforce",
        help="replay captured messages (JSONL "
        '{"topic":..,"payload":..} on stdin) through the pipeline; one '
        "outcome per line on stdout",
    )
    _add_engine_args(p)
    p.set_defaults(func=cmd_enforce)

    p = _command(
        sub,
        "explain",
        help="per-field decisions without values: of policies, or "
        "of captured messages with --input",
    )
    _add_engine_args(p)
    p.add_argument("products", nargs="*", help="products to show (default: all)")
    p.add_argument("--input", type=Path, help="JSONL captures to explain ('-' for stdin)")
    p.set_defaults(func=cmd_explain)

    p = _command(
        sub,
        "schemas",
        help="write JSON Schemas of the policy format and of every product's device messages",
    )
    p.add_argument("--policies", type=Path)
    p.add_argument("--out", type=Path, default=Path("schemas"))
    p.set_defaults(func=cmd_schemas)

    p = _command(
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

    p = _command(
        sub,
        "held",
        help="records held because no sink may receive them: list (counts per product, region "
        "and kind), replay to sinks configured since, purge; run while the gateway is stopped",
    )
    p.add_argument("action", choices=("list", "replay", "purge"))
    p.add_argument("--config", type=Path, help="gateway.toml (default: embedded defaults)")
    p.add_argument("--product", help="purge: only this product's records")
    p.set_defaults(func=cmd_held)

    p = _command(
        sub,
        "demo",
        help="a throwaway local mosquitto + a simulated fleet of the five products + the "
        "gateway on its defaults with file sinks, with a live summary",
    )
    p.add_argument("--duration", type=float, default=10.0, help="seconds (default: 10)")
    p.add_argument("--rate", type=float, default=200.0, help="messages/s (default: 200)")
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="sink directory")
    p.set_defaults(func=cmd_demo)

    p = _command(sub, "report", help="HTML compliance report per product from a metrics scrape")
    p.add_argument("--metrics", required=True, help="URL of /metrics or a file with its text")
    p.add_argument("--policies", type=Path)
    p.add_argument("--out", type=Path, default=Path("report.html"))
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args))
    except (
        PolicyError,  # PlanError is one
        RegistryError,
        TopicError,
        KeyError_,
        ConfigError,
        ReportError,
    ) as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
