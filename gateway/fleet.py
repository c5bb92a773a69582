"""A simulated fleet: realistic miIO messages for every product, generated from its policy.

Each device has stable identifiers (so pseudonyms repeat, as in a real fleet); messages carry
every declared field, plus what real devices also send and no policy declares (the device
token, extra diagnostics), so the demo and the benchmarks exercise the drop paths too.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from gateway.policy.loader import LoadedPolicy
from gateway.policy.model import KINDS, Field, KindRule

_PUBLIC_IPS = ("81.2.69.142", "8.8.8.8", "202.108.22.5", "5.255.255.5", "1.1.1.1")


@dataclass(frozen=True, slots=True)
class Device:
    product: str
    id: str
    mac: str
    uid: int
    token: str
    ssid: str
    bssid: str
    ip: str


def _mac(rng: random.Random) -> str:
    return ":".join(f"{rng.randrange(256):02X}" for _ in range(6))


def make_devices(
    products: Mapping[str, LoadedPolicy], per_product: int, seed: int = 7
) -> list[Device]:
    rng = random.Random(seed)
    out = []
    for pid in sorted(products):
        for _ in range(per_product):
            out.append(
                Device(
                    product=pid,
                    id=str(rng.randrange(10**8, 10**9)),
                    mac=_mac(rng),
                    uid=rng.randrange(10**9, 2 * 10**9),
                    token=f"{rng.getrandbits(128):032x}",
                    ssid=f"home-{rng.randrange(10**4)}",
                    bssid=_mac(rng),
                    ip=rng.choice(_PUBLIC_IPS)
                    if rng.random() < 0.3
                    else f"192.168.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                )
            )
    return out


def _value(f: Field, dev: Device, rng: random.Random) -> Any:
    cat, typ = f.category, f.type
    if cat == "device.mac":
        return dev.mac
    if cat == "account.id":
        return dev.uid if rng.random() < 0.5 else str(dev.uid)
    if cat == "device.id":
        return dev.id
    if cat.startswith("secret."):
        return dev.token
    if cat == "network.ssid":
        return dev.ssid
    if cat == "network.bssid":
        return dev.bssid
    if cat == "network.ip":
        return dev.ip
    if cat == "network.gateway":
        return "192.168.1.1"
    if cat == "network.netmask":
        return "255.255.255.0"
    if cat == "location.precise":
        return round(rng.uniform(-60, 60), 6)
    if f.text:
        return rng.choice(
            ["filter needs replacing", "wifi reconnect", f"owner {dev.id}@mail.example"]
        )
    if f.examples:
        return rng.choice(f.examples)
    if f.enum:
        return rng.choice(f.enum)
    lo = f.min if f.min is not None else 0
    hi = f.max if f.max is not None else 10**6
    if typ == "int":
        return rng.randint(int(lo), int(hi))
    if typ == "float":
        return round(rng.uniform(lo, hi), 2)
    if typ == "bool":
        return rng.random() < 0.5
    if typ == "id":
        return rng.randrange(10**6)
    return rng.choice(["on", "off", "auto"])


def _put(doc: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = doc
    for seg in parents:
        if seg.endswith("[]"):
            items = node.setdefault(seg[:-2], [{}])
            node = items[0]
        else:
            node = node.setdefault(seg, {})
    node[last] = value


def message(dev: Device, kind: str, rule: KindRule, rng: random.Random) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for f in rule.fields:
        # Real payloads vary: now and then a declared field or block is missing (never the
        # RPC method, without which a device's message is meaningless).
        if f.path != "method" and rng.random() < 0.05:
            continue
        _put(doc, f.path, _value(f, dev, rng))
    if rule.methods:
        m = rng.choice(rule.methods)
        doc["method"] = m.name
        positional = [f for f in m.params if f.path.split(".")[-1].isdigit()]
        if positional:
            doc["params"] = [_value(f, dev, rng) for f in positional]
        for f in m.params:
            if f not in positional:
                _put(doc, f.path, _value(f, dev, rng))
    if kind == "info":
        doc.setdefault("token", dev.token)
        doc["otu_stat"] = [101, 74, 5343, 0, 5327, 407]
        doc["miio_ver"] = "0.0.9"
    doc.setdefault("id", rng.randrange(1, 10**6))
    return doc


def stream(
    products: Mapping[str, LoadedPolicy],
    devices: list[Device],
    seed: int = 11,
    prefix: str = "miot",
) -> Iterator[tuple[str, bytes]]:
    """Endless (topic, payload) pairs, round-robin over devices and their declared kinds.

    As from real fleets: now and then a vendor extension block, one message in a hundred of a
    kind the product's policy does not declare, and one in five pretty-printed with spaces."""
    rng = random.Random(seed)
    enc = msgspec.json.Encoder()
    while True:
        for dev in devices:
            kinds = products[dev.product].policy.kinds
            declared = rng.choice(sorted(kinds))
            doc = message(dev, declared, kinds[declared], rng)
            if rng.random() < 0.05:
                doc["vendor_ext"] = {"seq": rng.randrange(10**6), "tag": rng.choice("ab")}
            kind: str = declared
            others = [str(k) for k in KINDS if k not in kinds]
            if others and rng.random() < 0.01:
                kind = rng.choice(others)
            raw = enc.encode(doc)
            if rng.random() < 0.2:
                raw = json.dumps(doc, separators=(", ", ": ")).encode()
            yield f"{prefix}/{dev.product}/{dev.id}/{kind}", raw
