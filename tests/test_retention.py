"""Retention: what the gateway stores itself (file sink days, held records, spooled records)
goes once older than the policy's retention_days (per kind, else per product, else the
deployment default)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import msgspec

from gateway.config import GatewayConfig, Routing, SinkSpec
from gateway.policy.loader import load_dir
from gateway.retention import RetentionConfig
from gateway.service import Gateway
from gateway.sinks.base import OutRecord
from gateway.sinks.file import FileSink, FileSinkConfig
from gateway.sinks.nats.config import NatsSinkConfig
from gateway.sources.mqtt.config import MqttSourceConfig
from gateway.spool.config import SpoolConfig
from tests.servers import Mosquitto, free_port
from tests.test_service import TEST_POLICIES, Publisher, publisher, records, wait_for

__all__ = ["publisher"]

DAY = 86400.0
PROPS = b'{"id":%d,"method":"props","params":{"aqi":%d}}'


def _rec(i: int, product: str, kind: str = "props") -> OutRecord:
    body = json.dumps({"id": str(i), "product": product, "kind": kind, "n": i})
    return OutRecord(f"{i:032x}", product, kind, "de", body.replace(" ", "").encode())


def test_file_sink_rolls_by_day_and_expires_whole_days(tmp_path: Path) -> None:
    sink = FileSink(FileSinkConfig(dir=str(tmp_path)), "de")
    t0 = 1_800_000_000.0  # 2027-01-15 08:00 UTC
    sink.clock = lambda: t0
    sink.open()
    sink.write([_rec(0, "short"), _rec(1, "long")])
    sink.clock = lambda: t0 + DAY
    sink.write([_rec(2, "short")])
    names = sorted(p.name for p in (tmp_path / "de").glob("records*"))
    assert names == ["records-2027-01-15.jsonl", "records.jsonl"]
    days = {"short": 1, "long": 3}.get

    def kept() -> list[int]:
        return sorted(r["n"] for r in _all(tmp_path / "de"))

    assert sink.expire(t0 + DAY, lambda p, k: days(p)) == 0
    assert sink.expire(t0 + 2 * DAY, lambda p, k: days(p)) == 1  # day 1's "short": 2 days old
    assert kept() == [1, 2]
    assert sink.expire(t0 + 4 * DAY, lambda p, k: days(p)) == 2  # rolled, then expired
    assert kept() == []
    assert not any((tmp_path / "de").glob("records-*"))
    sink.close()


def _all(d: Path) -> list[dict[str, int]]:
    return [json.loads(line) for p in d.glob("records*.jsonl") for line in p.read_bytes().split()]


def test_policy_retention_days_per_kind_and_product() -> None:
    policy = load_dir(TEST_POLICIES)["purifier"].policy
    assert policy.retention("props") == 7
    doc = msgspec.to_builtins(policy)
    doc["kinds"]["props"]["retention_days"] = 2
    changed = msgspec.convert(doc, type(policy))
    assert changed.retention("props") == 2 and changed.retention("info") == 7


def test_gateway_expires_held_spooled_and_file_records(
    tmp_path: Path, mosquitto: Mosquitto, publisher: Publisher
) -> None:
    # de -> file sink, us -> a NATS sink that is down (spooled), fr -> held.
    cfg = GatewayConfig(
        source=MqttSourceConfig(
            port=mosquitto.port,
            client_id=f"gw-{free_port()}",
            topic_pattern="miot/{region}/{product}/{device}/{kind}",
        ),
        policies=str(TEST_POLICIES),  # purifier: retention_days = 7
        state_dir=str(tmp_path / "state"),
        metrics_listen=f"127.0.0.1:{free_port()}",
        routing=Routing(default_region=None),
        spool=SpoolConfig(retry_s=0.2),
        retention=RetentionConfig(default_days=1),
        sinks=(
            SinkSpec(
                type="nats",
                regions=("us",),
                nats=NatsSinkConfig(f"nats://127.0.0.1:{free_port()}", timeout_s=0.5),
            ),
            SinkSpec(type="file", regions=("de",), file=FileSinkConfig(dir=str(tmp_path / "s"))),
        ),
    )
    gw = Gateway(cfg)
    gw.start()
    try:
        wait_for(gw.is_ready, what="gateway ready")
        for i, region in enumerate(["de", "us", "fr"] * 10):
            publisher.send(f"miot/{region}/purifier/dev1/props", PROPS % (i, i))
        wait_for(lambda: len(records(tmp_path / "s", "de")) == 10, what="10 in the file")
        wait_for(lambda: gw.sinks["us"].spooled_records == 10, what="10 spooled")
        wait_for(lambda: gw.held.records == 10, what="10 held")
        now = time.time()
        gw.expire(now + 6 * DAY)  # within the policy's 7 days (the default 1 does not apply)
        assert len(records(tmp_path / "s", "de")) == 10
        assert gw.sinks["us"].spooled_records == 10 and gw.held.records == 10
        gw.expire(now + 9 * DAY)
        assert records(tmp_path / "s", "de") == []
        assert gw.sinks["us"].spooled_records == 0 and gw.held.records == 0
        expired = gw.events.expired
        for store, region in (("file", "de"), ("spool", "us"), ("held", "-")):
            assert expired.labels(store, region)._value.get() == 10
    finally:
        gw.stop()
