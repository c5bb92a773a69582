"""Sinks against real destinations: the filesystem, mosquitto, nats-server (JetStream).

Nothing is mocked. Broker-down cases stop the real broker; recovery cases start it again
on the same port with the same persistence/store dir (tests/servers.py).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nats
import paho.mqtt.client as mqtt
import pytest
from nats.js.api import StreamConfig
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.sinks.base import OutRecord, SinkError
from gateway.sinks.file import FileSink, FileSinkConfig
from gateway.sinks.mqtt import MqttSink, MqttSinkConfig
from gateway.sinks.nats import NatsSink, NatsSinkConfig
from gateway.sinks.spooled import SpooledSink
from gateway.spool import Spool
from tests.proxy import TcpProxy
from tests.servers import Mosquitto, NatsServer, free_port

pytestmark = pytest.mark.timeout(20)

KEY = bytes(range(32))
MARKER = "PLAINTEXT-MARKER-51d0"


def rec(i: int, region: str = "de", kind: str = "event") -> OutRecord:
    device = f"p-{i % 4}"  # four devices, interleaved
    body = json.dumps({"n": i, "device": device, "note": MARKER}, separators=(",", ":"))
    return OutRecord(f"{i:032x}", "mijia-camera", kind, region, body.encode(), device)


def recs(start: int, n: int, region: str = "de") -> list[OutRecord]:
    return [rec(i, region) for i in range(start, start + n)]


def first_copies(msgs: list[tuple[str, bytes, dict[str, str]]]) -> list[tuple[str, bytes]]:
    """Messages in arrival order, each (topic, payload) once."""
    seen: set[tuple[str, bytes]] = set()
    out = []
    for topic, body, _ in msgs:
        if (topic, body) not in seen:
            seen.add((topic, body))
            out.append((topic, body))
    return out


def wait_until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


# -- file sink ---------------------------------------------------------------------------


def test_file_sink_appends_jsonl_durably(tmp_path: Path) -> None:
    sink = FileSink(FileSinkConfig(dir=str(tmp_path)), "de")
    sink.open()
    sink.write(recs(0, 3))
    sink.write(recs(3, 2))
    # Read through a separate descriptor: the bytes are in the file on return.
    lines = (tmp_path / "de" / "records.jsonl").read_bytes().split(b"\n")
    assert lines[-1] == b""
    assert lines[:-1] == [r.body for r in recs(0, 5)]
    sink.close()
    sink = FileSink(FileSinkConfig(dir=str(tmp_path)), "de")
    sink.open()
    sink.write(recs(5, 1))
    sink.close()
    lines = (tmp_path / "de" / "records.jsonl").read_bytes().splitlines()
    assert [json.loads(line)["n"] for line in lines] == list(range(6))


def test_file_sink_erasure_requests(tmp_path: Path) -> None:
    sink = FileSink(FileSinkConfig(dir=str(tmp_path)), "fr")
    sink.open()
    sink.erase("mijia-camera", "p-3f9a", 1700000000.5)
    sink.close()
    (line,) = (tmp_path / "fr" / "erasure.jsonl").read_bytes().splitlines()
    assert json.loads(line) == {
        "type": "erasure",
        "product": "mijia-camera",
        "device": "p-3f9a",
        "requested_at": 1700000000.5,
    }


def test_file_sink_cuts_a_torn_last_line_at_open(tmp_path: Path) -> None:
    sink = FileSink(FileSinkConfig(dir=str(tmp_path)), "de")
    sink.open()
    sink.write(recs(0, 2))
    sink.close()
    path = tmp_path / "de" / "records.jsonl"
    with path.open("ab") as f:
        f.write(b'{"n":2,"no')  # a crash in the middle of a batch
    sink.open()
    sink.write(recs(2, 1))
    sink.close()
    assert path.read_bytes().splitlines() == [r.body for r in recs(0, 3)]


def test_file_sink_refuses_foreign_region_and_bad_records(tmp_path: Path) -> None:
    sink = FileSink(FileSinkConfig(dir=str(tmp_path)), "de")
    sink.open()
    with pytest.raises(ValueError, match="region"):
        sink.write([rec(0, region="cn")])
    with pytest.raises(ValueError, match="single line"):
        sink.write([OutRecord("00", "mijia-camera", "event", "de", b'{"a":1}\n{"b":2}')])
    with pytest.raises(ValueError, match="product"):
        sink.write([OutRecord("00", "../etc", "event", "de", b"{}")])
    sink.close()
    assert (tmp_path / "de" / "records.jsonl").read_bytes() == b""
    with pytest.raises(ValueError):
        FileSink(FileSinkConfig(dir=str(tmp_path)), "..")


def test_file_sink_error_is_sink_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_bytes(b"")
    sink = FileSink(FileSinkConfig(dir=str(blocker)), "de")
    with pytest.raises(SinkError) as err:
        sink.open()
    assert MARKER not in str(err.value)


# -- mqtt --------------------------------------------------------------------------------


class Subscriber:
    """A real MQTT v5 subscriber with a persistent session, so it survives broker restarts."""

    def __init__(self, port: int, topic: str = "gateway/#") -> None:
        self.topic = topic
        self.cond = threading.Condition()
        self.msgs: list[tuple[str, bytes, dict[str, str]]] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"test-sub-{secrets.token_hex(4)}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", port, clean_start=False, properties=props)
        self.client.loop_start()
        if not self.subscribed.wait(10):
            pytest.fail("test subscriber could not subscribe")

    def _on_connect(self, c: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        if not rc.is_failure:
            c.subscribe(self.topic, qos=1)

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _m: int, _rc: Any, _p: Any) -> None:
        self.subscribed.set()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        props = dict(getattr(msg.properties, "UserProperty", []) or [])
        with self.cond:
            self.msgs.append((msg.topic, bytes(msg.payload), props))
            self.cond.notify_all()

    def wait_for(self, n: int, timeout: float = 10) -> list[tuple[str, bytes, dict[str, str]]]:
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.msgs) >= n, timeout):
                pytest.fail(f"subscriber got {len(self.msgs)} of {n} messages")
            return list(self.msgs)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscriber(mosquitto: Mosquitto) -> Iterator[Subscriber]:
    sub = Subscriber(mosquitto.port)
    yield sub
    sub.close()


def mqtt_cfg(port: int, **kw: Any) -> MqttSinkConfig:
    return MqttSinkConfig(host="127.0.0.1", port=port, timeout_s=1.0, **kw)


def test_mqtt_sink_delivers_every_record_qos1(mosquitto: Mosquitto, subscriber: Subscriber) -> None:
    sink = MqttSink(mqtt_cfg(mosquitto.port, max_inflight=100), "de")
    sink.open()
    try:
        n = 3000
        for start in range(0, n, 500):
            sink.write(recs(start, 500))
        got = subscriber.wait_for(n)
    finally:
        sink.close()
    assert len(got) == n
    assert {topic for topic, _, _ in got} == {"gateway/de/mijia-camera/event"}
    assert [json.loads(body)["n"] for _, body, _ in got] == list(range(n))


def test_mqtt_sink_qos2_completes_each_flow_within_the_brokers_window(
    mosquitto: Mosquitto, subscriber: Subscriber
) -> None:
    """QoS 2: each publish is done at PUBCOMP (after our PUBREL). mosquitto grants a
    Receive Maximum of 20; a window of 1000 asked for must be held to it, or the broker
    would refuse the excess QoS 2 flows."""
    sink = MqttSink(mqtt_cfg(mosquitto.port, qos=2, max_inflight=1000), "de")
    sink.open()
    try:
        n = 1000
        for start in range(0, n, 250):
            sink.write(recs(start, 250))
        got = subscriber.wait_for(n)
    finally:
        sink.close()
    assert [json.loads(body)["n"] for _, body, _ in got] == list(range(n))


def test_mqtt_sink_erasure(mosquitto: Mosquitto, subscriber: Subscriber) -> None:
    sink = MqttSink(mqtt_cfg(mosquitto.port, topic_prefix="gw"), "sg")
    sink.open()
    try:
        sink.erase("mijia-camera", "p-77", 12.5)
    finally:
        sink.close()
    sub_gw = subscriber  # subscribed to gateway/#: must not see the gw/ prefix
    assert sub_gw.msgs == []
    other = Subscriber(mosquitto.port, topic="gw/#")
    try:
        sink.open()
        sink.erase("mijia-camera", "p-78", 13.0)
        sink.close()
        got = other.wait_for(3)
    finally:
        other.close()
    # The first erasure's retained tombstone reaches the late subscriber; then the second
    # erasure's request and tombstone.
    assert [topic for topic, _, _ in got] == [
        "gw/sg/erasure/mijia-camera/p-77",
        "gw/sg/erasure",
        "gw/sg/erasure/mijia-camera/p-78",
    ]
    assert json.loads(got[1][1]) == {
        "type": "erasure",
        "product": "mijia-camera",
        "device": "p-78",
        "requested_at": 13.0,
    }


def test_mqtt_sink_broker_down_raises_quickly(mosquitto: Mosquitto) -> None:
    sink = MqttSink(mqtt_cfg(mosquitto.port), "de")
    sink.open()
    sink.write(recs(0, 10))
    mosquitto.stop()
    try:
        for attempt in range(3):
            t0 = time.monotonic()
            with pytest.raises(SinkError) as err:
                sink.write(recs(10 + attempt * 10, 10))
            assert time.monotonic() - t0 < 3.0
            assert MARKER not in str(err.value)
        # Back on the same port: the next write reconnects by itself.
        mosquitto.start()
        sink.write(recs(100, 10))
    finally:
        sink.close()


def test_mqtt_sink_refused_puback_is_an_error(tmp_path: Path) -> None:
    """A PUBACK with a failure reason code (here: ACL) means the broker dropped it."""
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite gateway/de/mijia-camera/#\n")
    broker = Mosquitto(tmp_path / "acl-broker", extra_config=[f"acl_file {acl}"])
    broker.start()
    sink = MqttSink(mqtt_cfg(broker.port), "de")
    try:
        sink.open()
        sink.write(recs(0, 3))
        refused = OutRecord("ff", "smartmi", "event", "de", b"{}")
        with pytest.raises(SinkError, match="Not authorized"):
            sink.write([*recs(3, 3), refused])
        sink.write(recs(6, 3))  # the next write reconnects and goes on
    finally:
        sink.close()
        broker.stop()


def test_mqtt_sink_open_fails_when_no_broker() -> None:
    sink = MqttSink(mqtt_cfg(free_port()), "de")
    t0 = time.monotonic()
    with pytest.raises(SinkError, match="connect"):
        sink.open()
    assert time.monotonic() - t0 < 3.0
    sink.close()


class Observed:
    """A DeliveryObserver that keeps what it is told."""

    def __init__(self) -> None:
        self.attempts: list[str] = []
        self.drained = 0

    def sink_attempt(self, sink: str, region: str, outcome: str, error: str = "") -> None:
        assert MARKER not in error
        self.attempts.append(outcome)

    def spool_drained(self, sink: str, region: str, records: int) -> None:
        self.drained += records


def test_spooled_sink_survives_broker_restart_in_order(
    tmp_path: Path, mosquitto: Mosquitto, subscriber: Subscriber
) -> None:
    spool = Spool(tmp_path / "spool", KEY, max_bytes=1 << 24)
    seen = Observed()
    sink = SpooledSink(MqttSink(mqtt_cfg(mosquitto.port), "de"), spool, 0.2, observer=seen)
    sink.open()
    try:
        assert sink.sink_up
        for b in range(5):
            sink.write(recs(b * 10, 10))
        assert sink.spooled_records == 0
        subscriber.wait_for(50)

        mosquitto.stop()
        for b in range(5, 15):
            sink.write(recs(b * 10, 10))  # returns: durable in the spool
        sink.erase("mijia-camera", "p-1", 99.0)
        for b in range(15, 20):
            sink.write(recs(b * 10, 10))
        assert not sink.sink_up
        # The erasure took p-1's 25 spooled records out: they are never delivered.
        assert sink.spooled_records == 126
        assert sink.spooled_bytes > 0
        time.sleep(0.5)  # several drain attempts fail against the stopped broker
        assert sink.spooled_records == 126

        mosquitto.start()  # same port, same persistence dir
        wait_until(lambda: sink.spooled_records == 0, 15, "the spool to drain")
        assert seen.drained == 126  # the erasure marker included, the erased 25 not
        assert sink.sink_up
        assert sink.spooled_bytes == 0
        assert sink.write(recs(200, 10)) == 0  # direct again
        # The broker may redeliver to this QoS1 subscriber what it had not acknowledged
        # when the broker stopped: those copies are the test subscriber's, not the sink's.
        wait_until(lambda: len(first_copies(subscriber.wait_for(0))) >= 187, 15, "187 messages")
        got = first_copies(subscriber.wait_for(0))
    finally:
        sink.close()
    data = [(t, json.loads(b)) for t, b in got]
    erasure_at = [i for i, (t, _) in enumerate(data) if t.startswith("gateway/de/erasure")]
    assert erasure_at == [125, 126]  # the request, then the retained tombstone
    ns = [d["n"] for t, d in data if not t.startswith("gateway/de/erasure")]
    erased = {n for n in range(50, 150) if n % 4 == 1}
    assert ns == [n for n in range(210) if n not in erased], "every other record, in order"


def test_spooled_sink_raises_when_sink_down_and_spool_full(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", KEY, max_bytes=2000)
    seen = Observed()
    sink = SpooledSink(MqttSink(mqtt_cfg(free_port()), "de"), spool, retry_s=60, observer=seen)
    sink.open()  # down at open is not fatal
    try:
        assert not sink.sink_up
        assert sink.write(recs(0, 5)) == 5  # all of it to the spool
        assert sink.spooled_records == 5
        assert seen.attempts == ["error"]
        for _ in range(3):  # each retry is one attempt, whatever the batch size
            with pytest.raises(SinkError, match="spool full") as err:
                sink.write(recs(5, 50))
        assert seen.attempts == ["error", "spool_full", "spool_full", "spool_full"]
        assert MARKER not in str(err.value)
        assert sink.spooled_records == 5
        with pytest.raises(ValueError, match="region"):
            sink.write([rec(0, region="us")])  # a routing bug is never spooled
        assert sink.spooled_records == 5
    finally:
        sink.close()


# -- nats --------------------------------------------------------------------------------


def nats_cfg(server: NatsServer, **kw: Any) -> NatsSinkConfig:
    return NatsSinkConfig(url=server.url, timeout_s=1.0, **kw)


def stream_messages(url: str, stream: str = "GATEWAY") -> int:
    async def main() -> int:
        nc = await nats.connect(url)
        try:
            info = await nc.jetstream().stream_info(stream)
            return int(info.state.messages)
        finally:
            await nc.close()

    return asyncio.run(main())


def fetch_all(url: str, n: int, subject: str = "gateway.>") -> list[Any]:
    """Read the stream back through a real (ephemeral) pull consumer."""

    async def main() -> list[Any]:
        nc = await nats.connect(url)
        try:
            psub = await nc.jetstream().pull_subscribe(subject, stream="GATEWAY")
            out: list[Any] = []
            while len(out) < n:
                for m in await psub.fetch(min(256, n - len(out)), timeout=5):
                    await m.ack()  # the consumer stops at max_ack_pending (1000) otherwise
                    out.append(m)
            return out
        finally:
            await nc.close()

    return asyncio.run(main())


def test_nats_sink_records_land_in_stream_deduplicated(nats_server: NatsServer) -> None:
    sink = NatsSink(nats_cfg(nats_server), "de")
    sink.open()
    try:
        sink.write(recs(0, 1500))
        assert stream_messages(nats_server.url) == 1500
        sink.write(recs(0, 1500))  # the same msg_ids again: deduplicated by JetStream
        sink.write(recs(1000, 600))  # partly old, partly new
        assert stream_messages(nats_server.url) == 1600
        # Erasure purges the device's subjects: its 400 records go, the others stay.
        sink.erase("mijia-camera", "p-1", 5.0)
        sink.erase("mijia-camera", "p-1", 5.0)  # a retried erasure is deduplicated too
        assert stream_messages(nats_server.url) == 1201
    finally:
        sink.close()
    msgs = fetch_all(nats_server.url, 1201)
    kept = [r for r in recs(0, 1600) if r.device != "p-1"]
    assert [m.subject for m in msgs[:1200]] == [
        f"gateway.de.mijia-camera.event.{r.device}" for r in kept
    ]
    assert [json.loads(m.data)["n"] for m in msgs[:1200]] == [i for i in range(1600) if i % 4 != 1]
    assert [m.headers["Nats-Msg-Id"] for m in msgs[:1200]] == [r.msg_id for r in kept]
    assert msgs[1200].subject == "gateway.de.erasure"
    assert json.loads(msgs[1200].data) == {
        "type": "erasure",
        "product": "mijia-camera",
        "device": "p-1",
        "requested_at": 5.0,
    }


def test_nats_sink_server_down_then_back(nats_server: NatsServer) -> None:
    sink = NatsSink(nats_cfg(nats_server), "fr")
    sink.open()
    try:
        sink.write(recs(0, 10, region="fr"))
        nats_server.stop()
        t0 = time.monotonic()
        with pytest.raises(SinkError) as err:
            sink.write(recs(10, 10, region="fr"))
        assert time.monotonic() - t0 < 5.0
        assert MARKER not in str(err.value)
        nats_server.start()  # same port, same JetStream store

        def written() -> bool:
            try:
                sink.write(recs(10, 10, region="fr"))
                return True
            except SinkError:
                return False

        wait_until(written, 15, "the nats sink to reconnect")
    finally:
        sink.close()
    assert stream_messages(nats_server.url) == 20


def test_nats_sink_open_fails_when_no_server(tmp_path: Path) -> None:
    sink = NatsSink(NatsSinkConfig(url=f"nats://127.0.0.1:{free_port()}", timeout_s=1.0), "de")
    t0 = time.monotonic()
    with pytest.raises(SinkError):
        sink.open()
    assert time.monotonic() - t0 < 5.0
    sink.close()


def test_nats_sink_widens_an_existing_stream(nats_server: NatsServer) -> None:
    async def create() -> None:
        nc = await nats.connect(nats_server.url)
        try:
            await nc.jetstream().add_stream(
                StreamConfig(name="GATEWAY", subjects=["other.>"], max_msgs=100000)
            )
        finally:
            await nc.close()

    asyncio.run(create())
    sink = NatsSink(nats_cfg(nats_server), "de")
    sink.open()
    try:
        sink.write(recs(0, 3))
    finally:
        sink.close()

    async def info() -> StreamConfig:
        nc = await nats.connect(nats_server.url)
        try:
            return (await nc.jetstream().stream_info("GATEWAY")).config
        finally:
            await nc.close()

    config = asyncio.run(info())
    assert config.subjects == ["other.>", "gateway.>"]
    assert config.max_msgs == 100000  # the operator's limits are kept
    assert config.duplicate_window == pytest.approx(120.0)
    assert stream_messages(nats_server.url) == 3


def test_spooled_nats_sink_survives_server_restart(tmp_path: Path, nats_server: NatsServer) -> None:
    spool = Spool(tmp_path / "spool", KEY, max_bytes=1 << 24)
    sink = SpooledSink(NatsSink(nats_cfg(nats_server), "de"), spool, retry_s=0.2)
    sink.open()
    try:
        sink.write(recs(0, 100))
        nats_server.stop()
        for b in range(1, 6):
            sink.write(recs(b * 100, 100))
        assert sink.spooled_records > 0
        nats_server.start()
        wait_until(lambda: sink.spooled_records == 0, 15, "the spool to drain")
        assert sink.sink_up
    finally:
        sink.close()
    assert stream_messages(nats_server.url) == 600
    msgs = fetch_all(nats_server.url, 600)
    assert [json.loads(m.data)["n"] for m in msgs] == list(range(600))


def test_spooled_nats_sink_drain_commits_what_was_acknowledged(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    """The link dies in the middle of a drain batch: what JetStream acknowledged is
    committed (the drain moves on), and the rest goes through once the link is back,
    nothing twice."""
    proxy = TcpProxy(nats_server.port, rate_bytes_s=20_000).start()
    spool = Spool(tmp_path / "spool", KEY, max_bytes=1 << 24)
    seen = Observed()
    nats_sink = NatsSink(NatsSinkConfig(url=f"nats://127.0.0.1:{proxy.port}", timeout_s=1.0), "de")
    sink = SpooledSink(nats_sink, spool, retry_s=60, observer=seen)  # drains when asked
    try:
        sink.open()
        proxy.block()
        assert sink.write(recs(0, 300)) == 300  # down: all spooled
        proxy.unblock()
        wait_until(lambda: nats_sink.connected, 10, "the sink reconnected")
        threading.Timer(1.5, proxy.block).start()  # some 60 records into the batch
        moved = sink.drain()
        assert 0 < moved < 300
        assert seen.drained == moved
        assert sink.spooled_records == 300 - moved
        assert stream_messages(nats_server.url) >= moved
        proxy.unblock()
        wait_until(lambda: nats_sink.connected, 10, "the sink reconnected")
        assert sink.drain() == 300 - moved
        assert sink.spooled_records == 0
    finally:
        sink.close()
        proxy.stop()
    assert stream_messages(nats_server.url) == 300  # once each
    msgs = fetch_all(nats_server.url, 300)
    assert [json.loads(m.data)["n"] for m in msgs] == list(range(300))  # in order
