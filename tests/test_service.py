"""The gateway service end to end, against a real mosquitto (and nats-server): what an edge
operator checks. Every declared field arrives in the right region, nothing undeclared leaves,
nothing accepted is lost across a gateway kill -9, a sink outage or a broker restart."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import nats
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from gateway.config import GatewayConfig, Processing, Routing, SinkSpec
from gateway.fleet import make_devices, message
from gateway.policy.loader import load_dir
from gateway.service import Gateway
from gateway.sinks.file.config import FileSinkConfig
from gateway.sinks.file.files import record_files
from gateway.sinks.nats.config import NatsSinkConfig
from gateway.sources.mqtt.config import MqttSourceConfig
from gateway.spool.config import SpoolConfig
from tests.servers import Mosquitto, NatsServer, free_port

TEST_POLICIES = Path(__file__).parent / "data" / "policies"


def wait_for(pred: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def records(sinks: Path, region: str) -> list[dict[str, Any]]:
    """Every record in the region's files (a test may run across midnight UTC)."""
    if not (sinks / region).is_dir():
        return []
    # The gateway may be appending right now: a last line without its newline is not there yet.
    return [
        json.loads(line)
        for path in record_files(sinks / region)
        for line in path.read_bytes().split(b"\n")[:-1]
        if line.strip()
    ]


def config(tmp_path: Path, port: int, **kw: Any) -> GatewayConfig:
    base: dict[str, Any] = {
        "source": MqttSourceConfig(port=port, client_id=f"gw-{free_port()}"),
        "state_dir": str(tmp_path / "state"),
        "metrics_listen": f"127.0.0.1:{free_port()}",
        "sinks": (SinkSpec(type="file", file=FileSinkConfig(dir=str(tmp_path / "sinks"))),),
        "processing": Processing(batch_max=200, batch_wait_ms=2),
    }
    base.update(kw)
    return GatewayConfig(**base)


class Publisher:
    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"pub-{free_port()}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self.client.max_queued_messages_set(0)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def send(self, topic: str, payload: bytes, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, f"publish rc {info.rc}"
        info.wait_for_publish(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def publisher(mosquitto: Mosquitto) -> Iterator[Publisher]:
    pub = Publisher(mosquitto.port)
    yield pub
    pub.close()


@pytest.fixture
def gateway_factory() -> Iterator[Callable[[GatewayConfig], Gateway]]:
    started: list[Gateway] = []

    def make(cfg: GatewayConfig, shadow: bool = False) -> Gateway:
        gw = Gateway(cfg, shadow=shadow)
        gw.start()
        wait_for(gw.is_ready, what="gateway connected")
        time.sleep(0.3)  # subscriptions granted
        started.append(gw)
        return gw

    yield make
    for gw in started:
        gw.stop()


def leaf_paths(doc: dict[str, Any], prefix: str = "") -> set[str]:
    out: set[str] = set()
    for k, v in doc.items():
        if isinstance(v, dict) and not ({"country", "continent"} >= v.keys() and v):
            out |= leaf_paths(v, f"{prefix}{k}.")
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for x in v:
                out |= leaf_paths(x, f"{prefix}{k}[].")
        else:
            out.add(prefix + k)
    return out


def test_fleet_of_five_products_lands_in_its_regions(
    tmp_path: Path,
    mosquitto: Mosquitto,
    publisher: Publisher,
    gateway_factory: Callable[[GatewayConfig], Gateway],
) -> None:
    policies = load_dir()
    devices = make_devices(policies, per_product=2)
    # One device of each product in a region its policy names, one in "fr" (named only by
    # the Mijia camera's policy): those must be held, never written to a regional sink.
    registry = tmp_path / "registry.toml"
    regions: dict[str, str] = {}
    for i, dev in enumerate(devices):
        named = [r.id for r in policies[dev.product].policy.regions]
        regions[dev.id] = named[-1] if (i % 2 == 0 and named) else "fr"
    registry.write_text("[devices]\n" + "".join(f'"{d}" = "{r}"\n' for d, r in regions.items()))
    gw = gateway_factory(config(tmp_path, mosquitto.port, routing=Routing(registry=str(registry))))
    rng = random.Random(1)
    sent: list[tuple[str, str, dict[str, Any]]] = []
    for dev in devices:
        # Every device turns its toggles on, so consent-gated fields are exercised too.
        toggles = {t.name: True for t in policies[dev.product].policy.toggles}
        publisher.send(
            f"miot/{dev.product}/{dev.id}/consent",
            msgspec.json.encode({"toggles": toggles}),
            retain=True,
        )
    time.sleep(0.3)
    for dev in devices:
        for kind, rule in policies[dev.product].policy.kinds.items():
            doc = message(dev, kind, rule, rng)
            publisher.send(f"miot/{dev.product}/{dev.id}/{kind}", msgspec.json.encode(doc))
            sent.append((dev.id, kind, doc))
    wait_for(lambda: sum(gw.events.received.values()) >= len(sent), what="all received")
    wait_for(lambda: gw.source.queue.qsize() == 0)
    time.sleep(0.5)

    sinks = tmp_path / "sinks"
    out: dict[str, list[dict[str, Any]]] = {
        r: records(sinks, r) for r in ("cn", "us", "sg", "fr", "de", "in", "ru")
    }
    raw = b"".join(
        (sinks / r / "records.jsonl").read_bytes()
        for r in out
        if (sinks / r / "records.jsonl").exists()
    )
    for dev in devices:
        # No raw identifier or secret of any device appears in any sink.
        for value in (dev.id, dev.mac, str(dev.uid), dev.token, dev.ssid, dev.bssid):
            assert value.encode() not in raw
    for region, recs in out.items():
        for rec in recs:
            assert rec["region"] == region
            allowed_regions = {r.id for r in policies[rec["product"]].policy.regions}
            assert region in allowed_regions, f"{rec['product']} written to {region}"
            rule = policies[rec["product"]].policy.kinds[rec["kind"]]
            allowed = {f.path for f in rule.fields if f.action != "drop"}
            # A method's positional params leave as one list at `params`.
            allowed |= {
                "params" if f.path[-1].isdigit() else f.path
                for m in rule.methods
                for f in m.params
                if f.action != "drop"
            }
            assert leaf_paths(rec["data"]) <= allowed
    total = sum(len(v) for v in out.values())
    assert total > 0
    held = sum(n for (_p, _k, o), n in gw.events.outcomes.items() if o == "held")
    assert held > 0
    # Smartmi's policy names no data centre: none of its records is in any sink.
    assert not any(r["product"] == "smartmi" for v in out.values() for r in v)
    # Every declared keep field sent by a routable device arrived.
    assert any("rssi" in r["data"].get("ap", {}) for v in out.values() for r in v)


def test_metrics_health_and_shadow_mode(
    tmp_path: Path,
    mosquitto: Mosquitto,
    publisher: Publisher,
    gateway_factory: Callable[..., Gateway],
) -> None:
    cfg = config(
        tmp_path, mosquitto.port, policies=str(TEST_POLICIES), routing=Routing(default_region="de")
    )
    gw = gateway_factory(cfg, shadow=True)
    for i in range(20):
        publisher.send(
            "miot/purifier/dev1/props",
            b'{"id":%d,"method":"props","params":{"power":"on"},"x":1}' % i,
        )
    publisher.send("miot/purifier/dev1/props", b'{"id":1,"id":2}')
    wait_for(lambda: sum(gw.events.received.values()) >= 21)
    time.sleep(0.3)
    assert records(tmp_path / "sinks", "de") == []  # shadow: nothing forwarded
    base = f"http://{cfg.metrics_listen}"
    body = urllib.request.urlopen(base + "/metrics", timeout=5).read().decode()
    assert 'gateway_messages_total{kind="props",outcome="shadowed",product="purifier"} 20.0' in body
    assert 'reason="duplicate_key"' in body
    # An undeclared key outside the known vocabulary is counted, never named.
    assert (
        'gateway_undeclared_fields_total{field="_other",kind="props",product="purifier"} 20.0'
        in body
    )
    assert urllib.request.urlopen(base + "/healthz", timeout=5).status == 200
    assert urllib.request.urlopen(base + "/readyz", timeout=5).status == 200


def test_consent_withdrawal_stops_forwarding_and_erases_everywhere(
    tmp_path: Path,
    mosquitto: Mosquitto,
    publisher: Publisher,
    gateway_factory: Callable[[GatewayConfig], Gateway],
) -> None:
    cfg = config(
        tmp_path, mosquitto.port, policies=str(TEST_POLICIES), routing=Routing(default_region="de")
    )
    gw = gateway_factory(cfg)
    props = b'{"id":1,"method":"props","params":{"power":"on"}}'
    publisher.send("miot/purifier/dev9/props", props)
    wait_for(lambda: len(records(tmp_path / "sinks", "de")) == 1)
    pseudonym = records(tmp_path / "sinks", "de")[0]["device"]
    publisher.send("miot/purifier/dev9/consent", b'{"withdrawn": true}', retain=True)
    time.sleep(0.3)
    publisher.send("miot/purifier/dev9/props", props)
    wait_for(lambda: gw.events.outcomes.get(("purifier", "props", "withdrawn"), 0) == 1)
    assert records(tmp_path / "sinks", "de") == []  # erased, and nothing new forwarded
    for region in ("de", "us"):  # every region the policy names gets the erasure request
        erasures = (tmp_path / "sinks" / region / "erasure.jsonl").read_bytes().splitlines()
        assert [json.loads(e)["device"] for e in erasures] == [pseudonym]
    gw.stop()
    # Consent state survives a restart.
    gw2 = gateway_factory(cfg)
    assert gw2.consent.get("purifier", "dev9") is not None
    assert gw2.consent.get("purifier", "dev9").withdrawn  # type: ignore[union-attr]


def _run_gateway(cfg_path: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "run", "--config", str(cfg_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _write_config(tmp_path: Path, port: int, extra: str = "") -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(
        f"""
policies = "{TEST_POLICIES}"
state_dir = "{tmp_path / "state"}"
metrics_listen = "127.0.0.1:{free_port()}"

[source]
port = {port}
client_id = "gw-kill"

[routing]
default_region = "de"

[processing]
batch_max = 100
batch_wait_ms = 2

{
            extra
            or f'''[[sinks]]
type = "file"
file = {{ dir = "{tmp_path / 'sinks'}" }}'''
        }
"""
    )
    return path


def _ids(recs: list[dict[str, Any]]) -> set[int]:
    return {r["data"]["id"] for r in recs}


def test_kill_9_loses_nothing_accepted(
    tmp_path: Path, mosquitto: Mosquitto, publisher: Publisher
) -> None:
    cfg = _write_config(tmp_path, mosquitto.port)
    proc = _run_gateway(cfg)
    n = 3000
    try:
        wait_for(lambda: (tmp_path / "state" / "worker-0").exists())
        time.sleep(1.0)
        for i in range(n):
            publisher.client.publish(
                "miot/purifier/dev1/props",
                b'{"id":%d,"method":"props","params":{"aqi":%d}}' % (i, i),
                qos=1,
            )
            if i == n // 2:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                proc = _run_gateway(cfg)
        wait_for(
            lambda: _ids(records(tmp_path / "sinks", "de")) == set(range(n)),
            timeout=60,
            what="every message in the sink after kill -9",
        )
    finally:
        proc.terminate()
        proc.wait(20)


def nats_config(tmp_path: Path, mosquitto: Mosquitto, nats_server: NatsServer) -> GatewayConfig:
    """The test policies to a NATS sink that fails fast and is retried often."""
    sinks = (SinkSpec(type="nats", nats=NatsSinkConfig(url=nats_server.url, timeout_s=1.0)),)
    return config(
        tmp_path,
        mosquitto.port,
        policies=str(TEST_POLICIES),
        sinks=sinks,
        routing=Routing(default_region="de"),
        spool=SpoolConfig(retry_s=0.2),
    )


def test_sink_outage_spools_encrypted_then_drains_to_nats(
    tmp_path: Path,
    mosquitto: Mosquitto,
    publisher: Publisher,
    nats_server: NatsServer,
    gateway_factory: Callable[[GatewayConfig], Gateway],
) -> None:
    cfg = nats_config(tmp_path, mosquitto, nats_server)
    gw = gateway_factory(cfg)
    publisher.send("miot/purifier/dev1/props", b'{"id":0,"method":"props"}')
    wait_for(lambda: gw.events.outcomes.get(("purifier", "props", "forwarded"), 0) == 1)
    nats_server.stop()
    for i in range(1, 201):
        publisher.client.publish(
            "miot/purifier/dev1/props", b'{"id":%d,"method":"props"}' % i, qos=1
        )
    wait_for(
        lambda: gw.events.outcomes.get(("purifier", "props", "forwarded"), 0) == 201,
        timeout=60,
        what="all accepted while NATS is down",
    )
    spool_dir = tmp_path / "state" / "worker-0" / "spool"
    on_disk = b"".join(p.read_bytes() for p in spool_dir.rglob("*") if p.is_file())
    assert on_disk and b'"method"' not in on_disk  # spooled, and encrypted
    nats_server.start()
    count = _stream_count(nats_server.url)
    wait_for(
        lambda: _stream_count(nats_server.url) == 201,
        timeout=60,
        what=f"drain to NATS (had {count})",
    )


def _stream_count(url: str) -> int:
    async def count() -> int:
        nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0)
        try:
            info = await nc.jetstream().stream_info("GATEWAY")
            return int(info.state.messages)
        finally:
            await nc.close()

    try:
        return asyncio.run(count())
    except Exception:
        return -1


def test_broker_restart_loses_nothing(
    tmp_path: Path,
    mosquitto: Mosquitto,
    gateway_factory: Callable[[GatewayConfig], Gateway],
) -> None:
    cfg = config(
        tmp_path, mosquitto.port, policies=str(TEST_POLICIES), routing=Routing(default_region="de")
    )
    gw = gateway_factory(cfg)
    pub = Publisher(mosquitto.port)
    for i in range(100):
        pub.send("miot/purifier/dev1/props", b'{"id":%d,"method":"props"}' % i)
    pub.close()
    mosquitto.stop()
    mosquitto.start()
    wait_for(gw.is_ready, what="gateway reconnected")
    pub = Publisher(mosquitto.port)
    for i in range(100, 200):
        pub.send("miot/purifier/dev1/props", b'{"id":%d,"method":"props"}' % i)
    pub.close()
    wait_for(
        lambda: _ids(records(tmp_path / "sinks", "de")) == set(range(200)),
        timeout=60,
        what="every message across a broker restart",
    )


def test_sighup_reloads_policy_without_loss(
    tmp_path: Path, mosquitto: Mosquitto, publisher: Publisher
) -> None:
    pol_dir = tmp_path / "policies"
    pol_dir.mkdir()
    text = (TEST_POLICIES / "purifier.toml").read_text()
    (pol_dir / "purifier.toml").write_text(text)
    cfg = _write_config(tmp_path, mosquitto.port)
    cfg.write_text(cfg.read_text().replace(str(TEST_POLICIES), str(pol_dir)))
    proc = _run_gateway(cfg)
    try:
        wait_for(lambda: (tmp_path / "state" / "worker-0").exists())
        time.sleep(1.0)
        publisher.send("miot/purifier/dev1/props", b'{"id":1,"method":"props","params":{"aqi":5}}')
        wait_for(lambda: len(records(tmp_path / "sinks", "de")) == 1)
        # The new policy no longer declares aqi.
        (pol_dir / "purifier.toml").write_text(
            "\n".join(line for line in text.splitlines() if "params.aqi" not in line)
        )
        proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        publisher.send("miot/purifier/dev1/props", b'{"id":2,"method":"props","params":{"aqi":5}}')
        wait_for(lambda: len(records(tmp_path / "sinks", "de")) == 2)
        first, second = records(tmp_path / "sinks", "de")
        assert first["data"]["params"] == {"aqi": 5}
        assert "params" not in second["data"]
        assert first["policy"]["hash"] != second["policy"]["hash"]
    finally:
        proc.terminate()
        proc.wait(20)
    assert proc.returncode == 0
    os.sync()


def test_two_workers_split_the_shared_subscription(
    tmp_path: Path, mosquitto: Mosquitto, publisher: Publisher
) -> None:
    cfg = _write_config(tmp_path, mosquitto.port)
    cfg.write_text(cfg.read_text().replace("[source]", "[source]\nshared = true"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "run", "--config", str(cfg), "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    n = 1000
    try:
        wait_for(lambda: (tmp_path / "state" / "worker-1").exists())
        time.sleep(1.5)
        for i in range(n):
            publisher.client.publish(
                "miot/purifier/dev1/props", b'{"id":%d,"method":"props"}' % i, qos=1
            )
        sinks = tmp_path / "sinks"

        def per_worker() -> list[set[int]]:
            return [_ids(records(sinks / f"worker-{w}", "de")) for w in (0, 1)]

        wait_for(
            lambda: set().union(*per_worker()) == set(range(n)),
            timeout=60,
            what="every message across two workers",
        )
        a, b = per_worker()
        assert a and b, "the broker should split the load between both workers"
    finally:
        proc.terminate()
        proc.wait(20)
    assert proc.returncode == 0


def test_a_broken_policy_on_reload_keeps_the_running_one(
    tmp_path: Path,
    mosquitto: Mosquitto,
    publisher: Publisher,
    gateway_factory: Callable[[GatewayConfig], Gateway],
) -> None:
    pol_dir = tmp_path / "policies"
    pol_dir.mkdir()
    good = (TEST_POLICIES / "purifier.toml").read_text()
    (pol_dir / "purifier.toml").write_text(good)
    cfg = config(
        tmp_path, mosquitto.port, policies=str(pol_dir), routing=Routing(default_region="de")
    )
    gw = gateway_factory(cfg)
    # Two conflicting declarations: loads as TOML, fails to compile.
    (pol_dir / "purifier.toml").write_text(
        good.replace('path = "params.aqi"', 'path = "params.power.x"')
    )
    gw.request_reload()
    publisher.send("miot/purifier/dev1/props", b'{"id":1,"method":"props","params":{"aqi":3}}')
    wait_for(lambda: len(records(tmp_path / "sinks", "de")) == 1)
    assert records(tmp_path / "sinks", "de")[0]["data"]["params"] == {"aqi": 3}
    body = urllib.request.urlopen(f"http://{cfg.metrics_listen}/metrics", timeout=5).read()
    assert b'gateway_policy_reloads_total{outcome="error"} 1.0' in body
    assert gw.healthy()


def test_records_spooled_before_a_restart_drain_without_new_traffic(
    tmp_path: Path,
    mosquitto: Mosquitto,
    publisher: Publisher,
    nats_server: NatsServer,
    gateway_factory: Callable[[GatewayConfig], Gateway],
) -> None:
    cfg = nats_config(tmp_path, mosquitto, nats_server)
    gw = gateway_factory(cfg)
    publisher.send("miot/purifier/dev1/props", b'{"id":0,"method":"props"}')
    wait_for(lambda: _stream_count(nats_server.url) == 1, what="first record in NATS")
    nats_server.stop()
    for i in range(1, 51):
        publisher.send("miot/purifier/dev1/props", b'{"id":%d,"method":"props"}' % i)
    wait_for(
        lambda: gw.events.outcomes.get(("purifier", "props", "forwarded"), 0) == 51,
        what="accepted into the spool",
    )
    gw.stop()
    nats_server.start()
    gateway_factory(cfg)  # same state dir, and no message for the region arrives
    wait_for(
        lambda: _stream_count(nats_server.url) == 51,
        timeout=30,
        what="spooled records drained after restart",
    )
