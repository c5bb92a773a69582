"""In-process throughput: the gateway engine against the JSON round trip and a naive filter.

    .venv/bin/python bench/inproc.py [--messages 20000] [--reps 7] [--json] [--profile]

One run, one generated payload set (realistic miIO info / props / event / command messages of
the shipped products, with variants: blocks missing, `uid` as str or int, unknown extra
fields, a few messages of kinds a product does not declare; 80% compact JSON, 20% with
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
import json
import logging
import os
import platform
import pstats
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from gateway.decode.plan import effective_action
from gateway.engine import Engine
from gateway.envelope import Held, Record, encode
from gateway.policy.loader import LoadedPolicy, load_dir
from gateway.policy.model import IDENTIFIERS
from gateway.route.router import Router
from gateway.transforms.pseudonymize import KeyRing

MASTER = bytes.fromhex("5f" * 32)
NOW = 1_700_000_000.0
Message = tuple[str, bytes]  # (topic, payload)

# -- the payload set ----------------------------------------------------------------------------

MODELS: dict[str, list[str]] = {
    "mijia-camera": ["chuangmi.camera.ipc009", "chuangmi.camera.ipc019"],
    "xiaofang-camera": ["isa.camera.isc5", "isa.camera.df3"],
    "mi-tv-remote": ["xiaomi.tv.v1", "xiaomi.tvbox.v1"],
    "smartmi": ["zhimi.airpurifier.ma4", "zhimi.humidifier.ca1"],
    "mi-home": ["lumi.gateway.v3", "lumi.gateway.mgl03"],
}
KIND_WEIGHTS: dict[str, dict[str, int]] = {
    "mijia-camera": {"info": 15, "props": 50, "event": 35},
    "xiaofang-camera": {"info": 15, "props": 50, "event": 35},
    "mi-tv-remote": {"info": 10, "props": 40, "event": 30, "command": 20},
    "smartmi": {"info": 15, "props": 85},
    "mi-home": {"info": 10, "props": 50, "event": 40},
}
PUBLIC_IPS = ["81.2.69.142", "202.108.22.5", "8.8.4.4", "193.99.144.80", "2001:4860::8888"]
TV_KEYS = ["KEY_HOME", "KEY_BACK", "KEY_VOLUMEUP", "KEY_VOLUMEDOWN", "KEY_OK", "KEY_POWER"]
HOME_EVENTS = ["event.motion", "event.no_motion", "event.open", "event.close", "event.click"]


@dataclass(frozen=True, slots=True)
class Device:
    did: str
    model: str
    mac: str
    uid: int
    ssid: str
    bssid: str
    ip: str
    token: str


def _mac(rng: random.Random) -> str:
    return ":".join(f"{rng.randrange(256):02X}" for _ in range(6))


def make_fleet(rng: random.Random, per_product: int) -> dict[str, list[Device]]:
    fleet: dict[str, list[Device]] = {}
    for product, models in MODELS.items():
        devices = []
        for _ in range(per_product):
            public = rng.random() < 0.15
            devices.append(
                Device(
                    did=str(rng.randrange(10**8, 10**9)),
                    model=rng.choice(models),
                    mac=_mac(rng),
                    uid=rng.randrange(10**9, 10**10),
                    ssid=rng.choice(["Xiaomi_", "TP-LINK_", "FRITZ!Box ", "Home-"])
                    + f"{rng.randrange(16**4):04X}",
                    bssid=_mac(rng).lower(),
                    ip=rng.choice(PUBLIC_IPS) if public else f"192.168.31.{rng.randrange(2, 254)}",
                    token=f"{rng.getrandbits(128):032x}",
                )
            )
        fleet[product] = devices
    return fleet


def info_payload(rng: random.Random, d: Device) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "life": rng.randrange(60, 3_000_000),
        "model": d.model,
        "token": d.token,
        "ipflag": 1,
        "fw_ver": rng.choice(["3.5.8_0075", "4.1.6_1999", "1.4.1_0158"]),
        "mcu_fw_ver": "0021",
        "wifi_fw_ver": "SD878x-14.76.36.p84-702.1.0-WM",
        "hw_ver": "MW300",
        "mmfree": rng.randrange(20_000, 90_000),
        "mac": d.mac,
        "ap": {"ssid": d.ssid, "bssid": d.bssid, "rssi": rng.randrange(-90, -30), "primary": 6},
        "netif": {"localIp": d.ip, "mask": "255.255.255.0", "gw": "192.168.31.1"},
        "uid": str(d.uid) if rng.random() < 0.5 else d.uid,
        "miio_ver": "0.0.9",
        "miio_client_ver": "4.0.6",
        "otu_stat": [101, 74, 5343, 0, 5327, 407],
        "ot": "otu",
    }
    if rng.random() < 0.2:
        del msg["ap"]
    if rng.random() < 0.15:
        del msg["netif"]
    if rng.random() < 0.1:
        del msg["uid"]
    return msg


def props_payload(rng: random.Random, product: str, n: int) -> dict[str, Any]:
    on = rng.choice(["on", "off"])
    params: dict[str, Any]
    if product == "mijia-camera":
        params = {
            "power": on,
            "sdcard_status": rng.randrange(0, 5),
            "night_mode": rng.randrange(0, 3),
            "flip": "off",
            "wdr": "on",
        }
    elif product == "xiaofang-camera":
        params = {"power": on, "motion_sensitivity": rng.randrange(0, 4), "light": "on"}
    elif product == "mi-tv-remote":
        params = {
            "power": on,
            "mute": rng.choice(["on", "off"]),
            "audio_mode": rng.choice(["standard", "movie", "music"]),
            "volume": rng.randrange(0, 101),
        }
    elif product == "smartmi":
        params = {
            "power": on,
            "mode": rng.choice(["auto", "silent", "favorite"]),
            "aqi": rng.randrange(0, 300),
            "humidity": rng.randrange(20, 80),
            "temp_dec": rng.randrange(150, 300),
            "filter1_life": rng.randrange(0, 101),
            "child_lock": "off",
            "buzzer": "on",
            "led_b": 0,
        }
    else:  # mi-home gateway
        params = {"arming": rng.choice(["on", "off"]), "rgb": rng.randrange(0, 2**24)}
        if rng.random() < 0.3:
            params["illumination"] = rng.randrange(300, 1300)
    if rng.random() < 0.3:  # firmware adds fields the policy does not know
        params["debug_uptime"] = rng.randrange(10**6)
    return {"id": n, "method": "props", "params": params}


def event_payload(rng: random.Random, product: str, n: int) -> dict[str, Any]:
    if product == "mi-tv-remote":
        return {"id": n, "method": "event.key_press", "params": [rng.choice(TV_KEYS)]}
    if product == "mi-home":
        sid = f"lumi.158d000{rng.randrange(16**5):05x}"
        return {"id": n, "method": rng.choice(HOME_EVENTS), "params": [sid], "sid": sid}
    return {
        "id": n,
        "method": "event.motion",
        "params": [int(NOW) + n, f"/sdcard/MIJIA_RECORD_VIDEO/{n:08d}.mp4"],
    }


def command_payload(rng: random.Random, n: int) -> dict[str, Any]:
    method, params = rng.choice(
        [
            ("press_key", [rng.choice(TV_KEYS)]),
            ("set_volume", [rng.randrange(0, 101)]),
            ("set_audio_mode", [rng.choice(["standard", "movie"])]),
        ]
    )
    return {"id": n, "method": method, "params": params}


def make_messages(n: int, seed: int, devices_per_product: int = 200) -> list[Message]:
    rng = random.Random(seed)
    fleet = make_fleet(rng, devices_per_product)
    products = list(MODELS)
    out: list[Message] = []
    for i in range(n):
        product = rng.choice(products)
        d = rng.choice(fleet[product])
        weights = KIND_WEIGHTS[product]
        kind = rng.choices(list(weights), weights=list(weights.values()))[0]
        if rng.random() < 0.01:  # a kind the product does not declare
            kind = "command" if "command" not in weights else "event"
        if kind == "info":
            payload = info_payload(rng, d)
        elif kind == "props":
            payload = props_payload(rng, product, i)
        elif kind == "event":
            payload = event_payload(rng, product, i)
        else:
            payload = command_payload(rng, i)
        if rng.random() < 0.05:
            payload["vendor_ext"] = {"seq": i, "tag": rng.choice(["a", "b"])}
        # Most firmware sends compact JSON; some pretty-prints with spaces.
        seps = (", ", ": ") if rng.random() < 0.2 else (",", ":")
        raw = json.dumps(payload, separators=seps).encode()
        out.append((f"miot/{product}/{d.did}/{kind}", raw))
    return out


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
    msgs = make_messages(args.messages, args.seed)
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
