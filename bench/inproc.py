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
d. ``floor``: the steps of (b) that run in C, with none of its Python policy work: the
   engine's route per topic, a dict decode, ``msgspec.convert`` into the product's compiled
   types (value domains included), the keyed id digest, a ``Record`` of every declared value
   (``msgspec.to_builtins``) and its encoding. Not a product (no field actions, no
   pseudonyms, no identifier floor, no consent, no counters): what this design costs before
   any per-field decision, so b/d is the price of the Python policy walk and d/a the floor
   any engine built on these types pays.

A second section, the identifier scanner (gateway/transforms/redact.py, run by the engine on
every forwarded string): its cost per typical kept string, and on hostile 64 KiB strings, side
by side with a baseline in the same run (``str.isascii()`` + ``len``, the cheapest pass over a
string) and with the scanner it replaced (``OLD_*`` below, the regexes of the previous
redact.py; on hostile input only at 4 KiB, as at 64 KiB one string costs it seconds).
``--skip-scanner`` leaves the section out.

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
import random
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from gateway.decode.plan import as_declared, effective_action
from gateway.engine import Engine, Route
from gateway.envelope import Held, Record, Rejection, encode
from gateway.fleet import make_devices, stream
from gateway.policy.loader import LoadedPolicy, load_dir
from gateway.policy.model import IDENTIFIERS
from gateway.route.router import Router
from gateway.transforms.pseudonymize import KeyRing
from gateway.transforms.redact import contains_identifier, redact

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


def make_floor(engine: Engine, msgs: Sequence[Message]) -> Callable[[Sequence[Message]], int]:
    """(d): see the module's docstring. Each message costs the C steps its outcome in (b)
    costs: a rejection before the typed decode (bad topic, undeclared kind, no consent) is a
    decode and an encoded Rejection; `nothing_declared` adds the typed decode; a record adds
    the id, the Record and its encoding."""
    routes: dict[str, Route] = engine._routes
    steps: dict[bytes, int] = {}  # payload -> 0 rejected early, 1 after convert, 2 record
    for topic, payload in msgs:  # once, untimed: (b)'s outcome of each message
        out = engine.process(topic, payload, NOW)
        early = isinstance(out, Rejection) and out.reason != "nothing_declared"
        steps[payload] = 0 if early else 1 if isinstance(out, Rejection) else 2
    dec = msgspec.json.Decoder()
    when = datetime.fromtimestamp(NOW, UTC)
    to_builtins = msgspec.to_builtins

    def run(msgs: Sequence[Message]) -> int:
        n = 0
        for topic, payload in msgs:
            obj = dec.decode(payload)
            step = steps[payload]
            route = routes.get(topic)
            if step == 0 or route is None:
                n += len(encode(Rejection("_unknown", "_unknown", "no_consent")))
                continue
            shape = route.plan.shape_of(obj)
            assert shape is not None
            as_declared(shape, obj)
            try:
                typed = msgspec.convert(obj, shape.type)
            except msgspec.ValidationError:
                typed = None  # a field outside its domain: (b) drops it and goes on
            if step == 1 or typed is None:
                n += len(encode(Rejection(route.kind, route.kind, "nothing_declared")))
                continue
            digest = route.id_seed.copy()
            digest.update(payload)
            product = route.product
            record = Record(
                id=digest.hexdigest(),
                product=product.ref.id,
                kind=route.kind,
                device=route.pseudonym,
                region="us",
                received=when,
                policy=product.ref,
                key=product.key_id,
                data=to_builtins(typed),
            )
            n += len(encode(record))
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


# -- the identifier scanner -------------------------------------------------------------------

# Values real devices send in kept fields (tests/data/identifiers/legit_values.jsonl has their
# sources), and a few that carry an identifier, as the engine sees them.
TYPICAL = [
    "1.4.1_154",
    "3.5.8_0041",
    "2.1.9_0045",
    "1.2.4_16",
    "MW300",
    "MC200",
    "ESP8266",
    "chuangmi.camera.ipc009",
    "zhimi.airpurifier.ma2",
    "lumi.gateway.v3",
    "isa.camera.hlc7",
    "on",
    "off",
    "auto",
    "silent",
    "favorite",
    "KEY_HOME",
    "KEY_VOLUMEUP",
    "set_power",
    "event.motion",
    "press_key",
    "SD878x-14.76.36.p84-702.1.0-WM",
    "2026-11-25T15:50:21Z",
    "20250508-110823/1.6.1-g8dbd358",
    "Filter at 37%, 21.5 C, humidity 40",
]
CARRYING = [
    "28:6C:07:A4:1B:9E",
    "ESP-A41B9E",
    "host192.168.31.47",
    "lumi.158d0001a2b3c4",
    "jane.doe+iot@example.com",
]
HOSTILE_SIZE = 65536


def hostile(size: int) -> dict[str, str]:
    """Strings built to make a scanner work: runs of what identifiers are made of."""
    shapes = {
        "hex run": "0123456789abcdef",
        "digits": "1",
        "dots": ".",
        "1.1.1.1.1...": "1.",
        "a@a@a@...": "a@",
        "colons": ":",
        "%3A%3A...": "%3A",
        "a:a:a:...": "a:",
        "aa-aa-aa...": "aa-",
        "base64 alphabet": "aA1+",
        "a-123456 ...": "a-123456 ",
        "esp-esp-...": "esp-",
        "::1 ::1 ...": "::1 ",
        "1.1.1.1 (versions)": "1.1.1.1 ",
        "words": "the quick brown fox jumps over the lazy dog ",
        # dense with real identifiers: every one is found and replaced, so these cost most
        "81.2.69.142 x5461 (all IPs)": "81.2.69.142 ",
        "a@aa.aa x8192 (all e-mails)": "a@aa.aa ",
    }
    out = {name: (unit * (size // len(unit) + 1))[:size] for name, unit in shapes.items()}
    rng = random.Random(1)
    out["random hex:.-@%_ "] = "".join(rng.choice("0123456789abcdef:.-@%_ ") for _ in range(size))
    out["random printable"] = "".join(chr(rng.randint(32, 126)) for _ in range(size))
    return out


OLD_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
OLD_MAC = re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){5,}(?![0-9A-Fa-f])")
OLD_IPV6 = re.compile(r"(?<!\w)[0-9A-Fa-f:.]{2,}(?:%[\w.]+)?(?!\w)")
OLD_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)")
OLD_IMEI = re.compile(r"(?<!\d)\d{15}(?!\d)")
OLD_HINT = re.compile(r"[0-9@:-]")


def old_redact(text: str) -> bool:
    """The replaced scanner's passes (without its per-match callbacks): a lower bound of it."""
    if OLD_HINT.search(text) is None:
        return False
    hit = False
    for rx in (OLD_EMAIL, OLD_MAC, OLD_IPV6, OLD_IPV4, OLD_IMEI):
        for _ in rx.finditer(text):
            hit = True
    return hit


def baseline(text: str) -> bool:
    return text.isascii() and len(text) > 0


def _best_us(fn: Callable[[str], object], items: Sequence[str], reps: int, loops: int) -> float:
    """Best of `reps` measurements of `loops` passes over `items`: microseconds per item."""
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        for _ in range(loops):
            for x in items:
                fn(x)
        best = min(best, time.perf_counter() - start)
    return best / (loops * len(items)) * 1e6


def scanner_section(reps: int) -> dict[str, Any]:
    contenders: dict[str, Callable[[str], object]] = {
        "baseline isascii+len": baseline,
        "old redact regexes": old_redact,
        "contains_identifier": contains_identifier,
        "redact": redact,
    }
    per_string: dict[str, dict[str, float]] = {}
    for label, items in (("typical kept string", TYPICAL), ("string with an identifier", CARRYING)):
        per_string[label] = {
            name: round(_best_us(fn, items, reps, 200), 3) for name, fn in contenders.items()
        }
    worst: dict[str, dict[str, float]] = {}
    for name, text in hostile(HOSTILE_SIZE).items():
        worst[name] = {
            "baseline isascii+len": round(_best_us(baseline, [text], reps, 5) / 1e3, 4),
            "contains_identifier": round(_best_us(contains_identifier, [text], reps, 1) / 1e3, 3),
            "redact": round(_best_us(redact, [text], reps, 1) / 1e3, 3),
        }
    old_small = {
        name: round(_best_us(old_redact, [text], 1, 1) / 1e3, 3)
        for name, text in hostile(4096).items()
    }
    return {
        "us_per_string": per_string,
        "hostile_ms": worst,
        "hostile_bytes": HOSTILE_SIZE,
        "worst_redact_ms": max(v["redact"] for v in worst.values()),
        "worst_contains_ms": max(v["contains_identifier"] for v in worst.values()),
        "old_redact_hostile_4KiB_ms": old_small,
    }


def print_scanner(sec: dict[str, Any]) -> None:
    print("\n## Identifier scanner (gateway/transforms/redact.py), best of the repetitions\n")
    names = list(next(iter(sec["us_per_string"].values())))
    print("| µs per string | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for label, row in sec["us_per_string"].items():
        print(f"| {label} | " + " | ".join(f"{row[n]:.2f}" for n in names) + " |")
    print(
        f"\n| hostile {sec['hostile_bytes'] // 1024} KiB string, ms | baseline isascii+len "
        "| contains_identifier | redact | old regexes at 4 KiB |"
    )
    print("|---|---:|---:|---:|---:|")
    for name, row in sec["hostile_ms"].items():
        print(
            f"| {name} | {row['baseline isascii+len']:.4f} | {row['contains_identifier']:.2f} | "
            f"{row['redact']:.2f} | {sec['old_redact_hostile_4KiB_ms'][name]:.2f} |"
        )
    kib = sec["hostile_bytes"] // 1024
    print(
        f"\nworst on a hostile {kib} KiB string: redact {sec['worst_redact_ms']:.2f} ms, "
        f"contains_identifier {sec['worst_contains_ms']:.2f} ms (the last four rows are dense "
        "with real identifiers, every one found and replaced)"
    )


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
    p.add_argument(
        "--skip-scanner", action="store_true", help="leave out the identifier scanner section"
    )
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
    contenders["floor"] = make_floor(engine, msgs)
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
        "ratio_floor_over_msgspec": round(med["floor"] / med["msgspec"], 4),
        "ratio_gateway_over_floor": round(med["gateway"] / med["floor"], 4),
    }
    if not args.skip_scanner:
        result["scanner"] = scanner_section(args.reps)
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
            "floor": "(d) floor: (b)'s C steps, no policy walk",
        }
        for name, r in rates.items():
            print(
                f"| {labels[name]} | {med[name]:,.0f} | {min(r):,.0f} | {max(r):,.0f} | "
                f"{1e6 / med[name]:.2f} |"
            )
        print()
        print(f"b/a (gateway / msgspec limit): {result['ratio_gateway_over_msgspec']:.3f}")
        print(f"c/b (naive / gateway): {result['ratio_naive_over_gateway']:.3f}")
        print(f"d/a (floor / msgspec limit): {result['ratio_floor_over_msgspec']:.3f}")
        print(f"b/d (gateway / floor): {result['ratio_gateway_over_floor']:.3f}")
        print(f"gateway outcomes over the set: {mix}")
        if "scanner" in result:
            print_scanner(result["scanner"])
    if args.profile:
        print("\ncProfile of (b), one pass over the set, top 15 by own time:", file=sys.stdout)
        print(profile(gw, msgs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
