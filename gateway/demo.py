"""`gateway demo`: a local broker, a simulated fleet of the five products, the gateway on its
embedded defaults with file sinks, and a live summary. Nothing to set up beyond pip and
mosquitto (Debian package)."""

from __future__ import annotations

import itertools
import logging
import random
import shutil
import time
from pathlib import Path

import msgspec
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from prometheus_client.exposition import generate_latest

from gateway.brokers import LocalMosquitto, free_port
from gateway.config import GatewayConfig, Routing, SinkSpec, StartupError
from gateway.fleet import Device, make_devices, stream
from gateway.policy.loader import LoadedPolicy, load_dir
from gateway.policy.model import REGIONS
from gateway.service import Gateway
from gateway.sinks.file.config import FileSinkConfig
from gateway.sources.mqtt.config import MqttSourceConfig


def _registry(path: Path, devices: list[Device], policies: dict[str, LoadedPolicy]) -> None:
    # Most devices sit in a region their product's policy names; one in five is in a region
    # it does not name: those records are held, never sent.
    rng = random.Random(3)
    lines = ["[devices]"]
    for dev in devices:
        named = sorted(r.id for r in policies[dev.product].policy.regions)
        other = sorted(REGIONS - set(named))
        region = rng.choice(named) if named and rng.random() < 0.8 else rng.choice(other)
        lines.append(f'"{dev.id}" = "{region}"')
    path.write_text("\n".join(lines) + "\n")


# Written into every directory the demo fills: only such a directory is ever emptied again.
MARKER = ".gateway-demo"
# Everything the demo writes in its directory, and nothing else is removed on a re-run.
OWN = (MARKER, "registry.toml", "state", "sinks", "metrics.prom", "report.html")
LIVE_WIDTH = 100


def prepare_out(out: Path) -> None:
    """An empty (or new) directory, or one an earlier demo filled: never the user's files."""
    if out.exists() and not out.is_dir():
        raise StartupError(f"--out {out}: not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise StartupError(
                f"--out {out}: not empty and not made by `gateway demo`; choose another directory"
            )
        for name in OWN:
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("made by `gateway demo`, which empties it again on its next run\n")


def run_demo(duration: float, rate: float, out: Path) -> int:
    # The live summary is the demo's output; per-event log lines would drown it.
    logging.getLogger("gateway").setLevel(logging.WARNING)
    prepare_out(out)
    broker = LocalMosquitto().start()
    policies = load_dir()
    devices = make_devices(policies, per_product=4)
    _registry(out / "registry.toml", devices, policies)
    config = GatewayConfig(
        source=MqttSourceConfig(port=broker.port, client_id="gateway-demo"),
        state_dir=str(out / "state"),
        metrics_listen=f"127.0.0.1:{free_port()}",
        routing=Routing(default_region="us", registry=str(out / "registry.toml")),
        sinks=(SinkSpec(type="file", file=FileSinkConfig(dir=str(out / "sinks"))),),
    )
    gw = Gateway(config)
    gw.start()
    pub = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="demo-fleet", protocol=MQTTProtocolVersion.MQTTv5
    )
    pub.max_queued_messages_set(0)
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    print(
        f"demo: broker on 127.0.0.1:{broker.port}, {len(devices)} devices of "
        f"{len(policies)} products, metrics on http://{config.metrics_listen}/metrics"
    )
    try:
        # A few devices grant their optional toggles, one withdraws consent entirely.
        for dev in devices[::5]:
            toggles = {t.name: True for t in policies[dev.product].policy.toggles}
            pub.publish(
                f"miot/{dev.product}/{dev.id}/consent",
                msgspec.json.encode({"toggles": toggles}),
                qos=1,
                retain=True,
            )
        pub.publish(
            f"miot/{devices[1].product}/{devices[1].id}/consent",
            '{"withdrawn": true}',
            qos=1,
            retain=True,
        )
        start = time.monotonic()
        sent = 0
        next_report = start + 1
        for topic, payload in itertools.islice(stream(policies, devices), None):
            now = time.monotonic()
            if now - start >= duration:
                break
            pub.publish(topic, payload, qos=1)
            sent += 1
            target = start + sent / rate
            if target > now:
                time.sleep(target - now)
            if now >= next_report:
                next_report += 1
                _summary(gw, sent, final=False)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and sum(gw.events.received.values()) < sent:
            time.sleep(0.1)
        time.sleep(0.5)
        _summary(gw, sent, final=True)
        for f in sorted((out / "sinks").glob("*/records.jsonl")):
            n = sum(1 for _ in f.open("rb"))
            print(f"  {f}: {n} records")
        print(f"  held (regions a policy does not name): {out / 'state'}/worker-0/held")
        _snapshot(gw, out, policies)
    finally:
        pub.loop_stop()
        pub.disconnect()
        gw.stop()
        broker.cleanup()
    return 0


def _snapshot(gw: Gateway, out: Path, policies: dict[str, LoadedPolicy]) -> None:
    """The metrics as Prometheus would have scraped them, and the report made from them."""
    from gateway.report import write_report

    metrics = out / "metrics.prom"
    metrics.write_bytes(generate_latest(gw.events.registry))
    write_report(str(metrics), out / "report.html", policies)
    print(f"  metrics snapshot: {metrics}")
    print(f"  compliance report: {out / 'report.html'} (open it in a browser)")
    print("next: gateway validate --config gateway.example.toml")
    print("      then gateway run --config gateway.example.toml, against your own broker")


def _totals(gw: Gateway) -> dict[str, dict[str, int]]:
    """Outcome counts per product."""
    per: dict[str, dict[str, int]] = {}
    for (product, _kind, outcome), n in list(gw.events.outcomes.items()):
        c = per.setdefault(product, {})
        c[outcome] = c.get(outcome, 0) + n
    return per


def _summary(gw: Gateway, sent: int, final: bool) -> None:
    ev = gw.events
    received = sum(ev.received.values())
    per = _totals(gw)
    if not final:
        t: dict[str, int] = {}
        for c in per.values():
            for o, n in c.items():
                t[o] = t.get(o, 0) + n
        line = (
            f"[live] sent {sent}  received {received}  forwarded {t.get('forwarded', 0)}  "
            f"held {t.get('held', 0)}  rejected {t.get('rejected', 0)}  "
            f"withdrawn {t.get('withdrawn', 0)}"
        )
        print(line[:LIVE_WIDTH], flush=True)
        return
    print(f"[final] sent {sent}, received {received}")
    for p, c in sorted(per.items()):
        print(f"  {p}: " + ", ".join(f"{o} {n}" for o, n in sorted(c.items()) if n))
    reasons: dict[str, int] = {}
    for (_p, _k, reason), n in list(ev.rejected.items()):
        reasons[reason] = reasons.get(reason, 0) + n
    shown = ", ".join(f"{r} {n}" for r, n in sorted(reasons.items())) or "none"
    print(f"  rejected by reason: {shown}")
    print(f"  undeclared fields dropped, by design: {sum(ev.undeclared.values())}")
