"""Commands on policies and captured messages: check, enforce, explain, schemas."""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import msgspec

from gateway.cli.common import (
    Capture,
    Sub,
    add_engine_args,
    command,
    engine,
    payload_of,
    policies,
)
from gateway.envelope import Held, Record, encode
from gateway.explain import message_decisions, policy_rows
from gateway.schemas import write_schemas
from gateway.validate.policies import policy_findings


def cmd_check(args: argparse.Namespace) -> int:
    errors = 0
    for lp in policies(args.dir).values():
        findings = policy_findings(lp)
        for f in findings:
            print(f)
        n_err = sum(1 for f in findings if f.level == "error")
        n_fields = sum(
            len(r.fields) + sum(len(m.params) for m in r.methods) for r in lp.policy.kinds.values()
        )
        status = "ok" if n_err == 0 else f"{n_err} error(s)"
        print(
            f"{lp.path.name}: {n_fields} fields in {len(lp.policy.kinds)} kinds, "
            f"regions {[r.id for r in lp.policy.regions]}: {status}"
        )
        errors += n_err
    return 1 if errors else 0


def cmd_enforce(args: argparse.Namespace) -> int:
    eng = engine(args)
    out = sys.stdout.buffer
    dec = msgspec.json.Decoder(Capture)
    tally: Counter[str] = Counter()
    for n, line in enumerate(sys.stdin.buffer, 1):
        if not line.strip():
            continue
        try:
            cap = dec.decode(line)
            payload = payload_of(cap)
        # RecursionError: a payload nested deeper than the decoder's stack; one bad line never
        # ends the replay.
        except (
            msgspec.DecodeError,
            msgspec.ValidationError,
            ValueError,
            UnicodeDecodeError,
            RecursionError,
        ):
            tally["rejected"] += 1
            out.write(b'{"rejected":{"reason":"invalid_capture","line":%d}}\n' % n)
            continue
        result = eng.process(cap.topic, payload, time.time())
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
        src = sys.stdin.buffer if str(args.input) == "-" else args.input.open("rb")
        eng = engine(args)
        dec = msgspec.json.Decoder(Capture)
        for n, line in enumerate(src, 1):
            if not line.strip():
                continue
            try:
                cap = dec.decode(line)
                d = message_decisions(eng, cap.topic, payload_of(cap))
            except (
                msgspec.DecodeError,
                msgspec.ValidationError,
                ValueError,
                UnicodeDecodeError,
                RecursionError,
            ):
                d = {"reason": "invalid_capture"}
            sys.stdout.buffer.write(msgspec.json.encode({"line": n, **d}) + b"\n")
        return 0
    loaded = policies(args.policies)
    wanted = args.products or list(loaded)
    unknown = [p for p in wanted if p not in loaded]
    if unknown:
        print(
            f"gateway explain: unknown product(s) {unknown}; known: {sorted(loaded)}",
            file=sys.stderr,
        )
        return 2
    cols = ("kind", "field", "category", "declared", "action", "domain", "consent", "cite")
    for pid in wanted:
        lp = loaded[pid]
        print(
            f"# {pid}: {lp.policy.name} ({lp.policy.publisher}), regions "
            f"{[r.id for r in lp.policy.regions] or 'none: nothing leaves'}"
        )
        rows = list(policy_rows(lp))
        widths = [max(len(c), *(len(r[c]) for r in rows)) if rows else len(c) for c in cols]
        print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
        for r in rows:
            print("  ".join(r[c].ljust(w) for c, w in zip(cols, widths, strict=True)))
            if r["quote"]:
                print(f"    # {r['quote']}")
        print()
    return 0


def cmd_schemas(args: argparse.Namespace) -> int:
    for path in write_schemas(args.out, policies(args.policies)):
        print(path)
    return 0


def cmd_capture(args: argparse.Namespace) -> int:
    from gateway.capture import capture
    from gateway.route.topics import TopicScheme

    return capture(
        args.broker, args.out, TopicScheme(args.topic_pattern), args.count, args.duration
    )


def add_commands(sub: Sub) -> None:
    p = command(
        sub,
        "check",
        help="lint policies: every forwarded field has purpose and citation, every cited "
        "heading exists in its text; exit 1 on errors",
    )
    p.add_argument("dir", nargs="?", type=Path, help="policy directory (default: shipped)")
    p.set_defaults(func=cmd_check)

    p = command(
        sub,
        "enforce",
        help="replay captured messages (JSONL "
        '{"topic":..,"payload":..} on stdin) through the pipeline; one '
        "outcome per line on stdout",
    )
    add_engine_args(p)
    p.set_defaults(func=cmd_enforce)

    p = command(
        sub,
        "explain",
        help="per-field decisions without values: of policies, or "
        "of captured messages with --input",
    )
    add_engine_args(p)
    p.add_argument("products", nargs="*", help="products to show (default: all)")
    p.add_argument("--input", type=Path, help="JSONL captures to explain ('-' for stdin)")
    p.set_defaults(func=cmd_explain)

    p = command(
        sub,
        "capture",
        help="record what devices publish into JSONL for enforce and explain --input "
        "(raw values: the file is mode 0600)",
    )
    p.add_argument("--broker", default="127.0.0.1:1883", help="HOST:PORT (default: %(default)s)")
    p.add_argument("--out", type=Path, required=True, help="JSONL file to write")
    p.add_argument("--count", type=int, help="stop after this many messages")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument(
        "--topic-pattern",
        default="miot/{product}/{device}/{kind}",
        help="topic layout (default: miot/{product}/{device}/{kind})",
    )
    p.set_defaults(func=cmd_capture)

    p = command(
        sub,
        "schemas",
        help="write JSON Schemas of the policy format and of every product's device messages",
    )
    p.add_argument("--policies", type=Path)
    p.add_argument("--out", type=Path, default=Path("schemas"))
    p.set_defaults(func=cmd_schemas)
