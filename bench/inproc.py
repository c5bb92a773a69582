"""In-process throughput: the gateway engine against the JSON round trip and a naive filter.

    .venv/bin/python bench/inproc.py [--messages 20000] [--reps 7] [--json] [--profile]

One run, one generated payload set (gateway/fleet.py: miIO info / props / event / command
messages of the shipped products, with variants: blocks missing, `uid` as str or int, unknown
extra fields, a few messages of kinds a product does not declare; 80% compact JSON, 20% with
spaces), three contenders:

a. ``msgspec``: ``msgspec.json`` decode + encode of each payload. No policy at all: the limit.
b. ``gateway``: ``Engine.process`` + ``envelope.encode`` of the outcome (full enforcement:
   topic, limits, duplicate keys, typed decode, per-field actions, geo, redaction, envelope).
c. ``naive``: ``json.loads`` + a dict filter by an allowlist of paths taken from the same
   policies + ``hmac``/``hashlib`` SHA-256 of identifiers + ``json.dumps``: what users write.
   It checks nothing (no limits, no duplicate keys, no types, no consent, no redaction) and
   drops IPs instead of coarsening them.

The machine is shared and noisy, so repetitions are interleaved (a, b, c, a, b, c, ...), each
measurement loops over the set until it has run for at least ``--min-time`` seconds, and the
report gives medians and the ratios b/a and c/b of the medians.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import hmac
import io
import itertools
import json
import logging
import os
import platform
import pstats
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec

from gateway.decode.plan import effective_action
from gateway.engine import Engine
from gateway.envelope import Held, Record, encode
from gateway.fleet import make_devices, stream
from gateway.policy.loader import LoadedPolicy, load_dir
from gateway.policy.model import IDENTIFIERS
from gateway.route.router import Router
from gateway.transforms.pseudonymize import KeyRing

MASTER = bytes.fromhex("5f" * 32)
NOW = 1_700_000_000.0
Message = tuple[str, bytes]  # (topic, payload)

# -- the payload set ----------------------------------------------------------------------------


def make_messages(
    policies: Mapping[str, LoadedPolicy], n: int, seed: int, devices_per_product: int = 200
) -> list[Message]:
    """The simulated fleet the demo and the end-to-end benchmark use (gateway/fleet.py)."""
    devices = make_devices(policies, devices_per_product, seed)
    return list(itertools.islice(stream(policies, devices, seed), n))


# -- the contenders -----------------------------------------------------------------------------


def make_plain() -> Callable[[Sequence[Message]], int]:
    dec = msgspec.json.Decoder()
    enc = msgspec.json.Encoder()

    def run(msgs: Sequence[Message]) -> int:
        n = 0
        for _topic, payload in msgs:
            n += len(enc.encode(dec.decode(payload)))
        return n

    return run


def make_gateway(policies: Mapping[str, LoadedPolicy]) -> tuple[Engine, Callable[..., int]]:
    engine = Engine(policies, KeyRing(MASTER), Router("us"))

    def run(msgs: Sequence[Message]) -> int:
        n = 0
        process = engine.process
        for topic, payload in msgs:
            n += len(encode(process(topic, payload, NOW)))
        return n

    return engine, run


# Naive allowlist: path -> "keep" | "hmac", per (product, kind), from the same policies.
Allow = dict[tuple[str, str], dict[str, str]]


def naive_allowlist(policies: Mapping[str, LoadedPolicy]) -> Allow:
    allow: Allow = {}
    for pid, lp in policies.items():
        for kind, rule in lp.policy.kinds.items():
            paths: dict[str, str] = {}
            for f in rule.fields:
                action = effective_action(f)
                if action == "keep":
                    paths[f.path] = "keep"
                elif action == "pseudonymize" or f.category in IDENTIFIERS:
                    paths[f.path] = "hmac"
                # coarsen and drop: a naive filter just drops
            allow[pid, kind] = paths
    return allow


def make_naive(policies: Mapping[str, LoadedPolicy]) -> Callable[[Sequence[Message]], int]:
    allow = naive_allowlist(policies)
    key = hashlib.sha256(MASTER).digest()

    def h(value: Any) -> str:
        return hmac.new(key, str(value).encode(), hashlib.sha256).hexdigest()

    def keep(obj: dict[str, Any], paths: dict[str, str], prefix: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in obj.items():
            path = prefix + k
            action = paths.get(path)
            if action == "keep":
                out[k] = v
            elif action == "hmac":
                out[k] = h(v)
            elif isinstance(v, dict) and any(p.startswith(path + ".") for p in paths):
                sub = keep(v, paths, path + ".")
                if sub:
                    out[k] = sub
        return out

    def run(msgs: Sequence[Message]) -> int:
        n = 0
        for topic, payload in msgs:
            _, product, device, kind = topic.split("/")
            paths = allow.get((product, kind))
            if paths is None:
                continue
            obj = json.loads(payload)
            if not isinstance(obj, dict):
                continue
            record: dict[str, Any] = {"product": product, "kind": kind, "device": h(device)}
            record["data"] = keep(obj, paths, "")
            n += len(json.dumps(record))
        return n

    return run


# -- measuring ----------------------------------------------------------------------------------


def passes_for(fn: Callable[[Sequence[Message]], int], msgs: Sequence[Message], t: float) -> int:
    """How many passes over the set make one measurement last at least `t` seconds."""
    start = time.perf_counter()
    fn(msgs)
    one = max(time.perf_counter() - start, 1e-6)
    return max(1, round(t / one + 0.5))


def measure(fn: Callable[[Sequence[Message]], int], msgs: Sequence[Message], passes: int) -> float:
    start = time.perf_counter()
    for _ in range(passes):
        fn(msgs)
    return passes * len(msgs) / (time.perf_counter() - start)


def outcome_mix(engine: Engine, msgs: Sequence[Message]) -> dict[str, int]:
    tally: Counter[str] = Counter()
    for topic, payload in msgs:
        out = engine.process(topic, payload, NOW)
        if isinstance(out, Record):
            tally["forwarded"] += 1
        elif isinstance(out, Held):
            tally["held"] += 1
        else:
            tally[f"rejected:{out.reason}"] += 1
    return dict(sorted(tally.items()))


def profile(fn: Callable[[Sequence[Message]], int], msgs: Sequence[Message]) -> str:
    prof = cProfile.Profile()
    prof.enable()
    fn(msgs)
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(15)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--messages", type=int, default=20_000, help="payload set size")
    p.add_argument("--reps", type=int, default=7, help="interleaved repetitions (a,b,c each)")
    p.add_argument(
        "--min-time", type=float, default=0.3, help="seconds per measurement (passes over the set)"
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--profile", action="store_true", help="top 15 cProfile entries of (b)")
    args = p.parse_args(argv)
    logging.getLogger("gateway").setLevel(logging.ERROR)

    policies = load_dir()
    msgs = make_messages(policies, args.messages, args.seed)
    engine, gw = make_gateway(policies)
    contenders: dict[str, Callable[[Sequence[Message]], int]] = {
        "msgspec": make_plain(),
        "gateway": gw,
        "naive": make_naive(policies),
    }
    mix = outcome_mix(engine, msgs)
    passes = {name: passes_for(fn, msgs, args.min_time) for name, fn in contenders.items()}
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.reps):
        for name, fn in contenders.items():
            rates[name].append(measure(fn, msgs, passes[name]))

    med = {name: statistics.median(r) for name, r in rates.items()}
    result: dict[str, Any] = {
        "python": platform.python_version(),
        "msgspec": msgspec.__version__,
        "cpus": os.cpu_count(),
        "messages": len(msgs),
        "mean_payload_bytes": round(sum(len(m[1]) for m in msgs) / len(msgs), 1),
        "reps": args.reps,
        "passes": passes,
        "gateway_outcomes": mix,
        "msgs_per_s": {
            name: {
                "median": round(med[name]),
                "min": round(min(r)),
                "max": round(max(r)),
                "all": [round(x) for x in r],
            }
            for name, r in rates.items()
        },
        "ratio_gateway_over_msgspec": round(med["gateway"] / med["msgspec"], 4),
        "ratio_naive_over_gateway": round(med["naive"] / med["gateway"], 4),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"{len(msgs)} messages (mean {result['mean_payload_bytes']} B), {args.reps} "
            f"interleaved reps, Python {result['python']}, msgspec {result['msgspec']}, "
            f"{result['cpus']} CPUs\n"
        )
        print("| contender | median msgs/s | min | max | µs/msg (median) |")
        print("|---|---:|---:|---:|---:|")
        labels = {
            "msgspec": "(a) msgspec decode+encode",
            "gateway": "(b) gateway Engine.process+encode",
            "naive": "(c) naive json+allowlist+hmac",
        }
        for name, r in rates.items():
            print(
                f"| {labels[name]} | {med[name]:,.0f} | {min(r):,.0f} | {max(r):,.0f} | "
                f"{1e6 / med[name]:.2f} |"
            )
        print()
        print(f"b/a (gateway / msgspec limit): {result['ratio_gateway_over_msgspec']:.3f}")
        print(f"c/b (naive / gateway): {result['ratio_naive_over_gateway']:.3f}")
        print(f"gateway outcomes over the set: {mix}")
    if args.profile:
        print("\ncProfile of (b), one pass over the set, top 15 by own time:", file=sys.stdout)
        print(profile(gw, msgs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
