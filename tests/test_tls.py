"""The MQTT source over mutual TLS, end to end against a real mosquitto.

The broker is set up like deploy/mosquitto/mosquitto.conf: a TLS listener that requires a
client certificate signed by its CA and takes the certificate's CN as the MQTT username,
with the shipped ACL (deploy/mosquitto/acl), so only the identity `gateway` may read device
telemetry and only the device `dev1` may publish it. The PKI is made fresh per test
(tests/certs.py), including an impostor CA with the same name as the real one.

A gateway with a trusted certificate connects and forwards; a gateway that the broker refuses
(impostor certificate, no certificate) or that refuses the broker (untrusted CA, name not in
the certificate) never becomes ready, reports `gateway_source_connected 0`, writes nothing,
takes nothing from the real gateway's persistent session, and stops promptly.
"""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from gateway.config import GatewayConfig, Routing
from gateway.service import Gateway
from gateway.sources.mqtt.config import MqttSourceConfig, SourceTls
from tests.certs import CertificateAuthority, Issued
from tests.servers import Mosquitto, free_port, port_open
from tests.test_service import TEST_POLICIES, config, records, wait_for

DEPLOY_ACL = Path(__file__).resolve().parents[1] / "deploy" / "mosquitto" / "acl"
DEVICE = "dev1"
PROPS_TOPIC = f"miot/purifier/{DEVICE}/props"
# How long a refused gateway is watched: the source retries after 1 s, then 2 s, so this
# covers three connection attempts.
REFUSED_WATCH_S = 4.0
STOP_BUDGET_S = 5.0


def props(i: int) -> bytes:
    return b'{"id":%d,"method":"props","params":{"power":"on"}}' % i


# -- PKI and broker ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: CertificateAuthority
    server: Issued  # signed by `ca`, for IP 127.0.0.1 only
    gateway: Issued  # CN gateway, signed by `ca`
    device: Issued  # CN dev1, signed by `ca`
    impostor_ca: CertificateAuthority  # same subject name as `ca`, another key
    impostor_gateway: Issued  # CN gateway, signed by `impostor_ca`


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = CertificateAuthority(tmp_path / "pki", "real")
    impostor = CertificateAuthority(tmp_path / "pki", "impostor")
    assert ca.name == impostor.name
    return Pki(
        ca=ca,
        server=ca.server("mqtt.test", ips=("127.0.0.1",)),
        gateway=ca.client("gateway"),
        device=ca.client(DEVICE),
        impostor_ca=impostor,
        impostor_gateway=impostor.client("gateway"),
    )


class TlsBroker:
    """Mosquitto with the fixture's plain listener (no rights under the ACL: anonymous) and a
    mutual-TLS listener configured like deploy/mosquitto/mosquitto.conf."""

    def __init__(self, workdir: Path, pki: Pki) -> None:
        self.tls_port = free_port()
        # stdout (the fixture's log) is block-buffered into a file; this one is flushed.
        self.log_file = workdir / "mosquitto-flushed.log"
        self.server = Mosquitto(
            workdir,
            extra_config=[
                f"acl_file {DEPLOY_ACL}",
                f"listener {self.tls_port} 127.0.0.1",
                f"cafile {pki.ca.cert}",
                f"certfile {pki.server.cert}",
                f"keyfile {pki.server.key}",
                # A minimum in mosquitto 2.0: TLS 1.3 is negotiated when both sides can.
                "tls_version tlsv1.2",
                "require_certificate true",
                "use_identity_as_username true",
                "connection_messages true",
                "log_type information",  # "New client connected ... u'<username>'"
                f"log_dest file {self.log_file}",
            ],
        )

    def start(self) -> None:
        self.server.start()  # waits for the plain listener; both are bound before serving
        wait_for(lambda: port_open(self.tls_port), timeout=5, what="TLS listener")

    def stop(self) -> None:
        self.server.stop()

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""


@pytest.fixture
def start_broker(tmp_path: Path, pki: Pki) -> Iterator[Callable[[], TlsBroker]]:
    started: list[TlsBroker] = []

    def start() -> TlsBroker:
        broker = TlsBroker(tmp_path / f"mosquitto-{len(started)}", pki)
        started.append(broker)
        broker.start()
        return broker

    yield start
    for broker in started:
        broker.stop()


class Device:
    """The device `dev1`, publishing over mutual TLS with its own certificate."""

    def __init__(self, port: int, pki: Pki) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"{DEVICE}-{free_port()}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self.client.tls_set(
            ca_certs=str(pki.ca.cert), certfile=str(pki.device.cert), keyfile=str(pki.device.key)
        )
        self.client.max_queued_messages_set(0)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def send(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, f"publish rc {info.rc}"
        info.wait_for_publish(10)
        assert info.is_published()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def devices(pki: Pki) -> Iterator[Callable[[int], Device]]:
    opened: list[Device] = []

    def connect(port: int) -> Device:
        dev = Device(port, pki)
        opened.append(dev)
        return dev

    yield connect
    for dev in opened:
        dev.close()


# -- gateways ---------------------------------------------------------------------------------


class Gateways:
    """Starts in-process gateways and guarantees each is stopped exactly once."""

    def __init__(self) -> None:
        self.running: list[Gateway] = []

    def start(self, cfg: GatewayConfig) -> Gateway:
        gw = Gateway(cfg)
        self.running.append(gw)
        gw.start()
        return gw

    def stop(self, gw: Gateway) -> None:
        """Stop `gw` and check nothing of it is left: worker, data connection, HTTP."""
        self.running.remove(gw)
        t0 = time.monotonic()
        gw.stop()
        took = time.monotonic() - t0
        assert took < STOP_BUDGET_S, f"gateway took {took:.1f} s to stop"
        assert gw.worker_thread is not None
        assert not gw.worker_thread.is_alive()
        assert not gw.source.connected.is_set()
        assert gw.source.tls_version is None  # the data connection is closed
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(f"http://{gw.config.metrics_listen}/healthz", timeout=2)

    def stop_all(self) -> None:
        for gw in list(self.running):
            self.running.remove(gw)
            gw.stop()


@pytest.fixture
def gateways() -> Iterator[Gateways]:
    g = Gateways()
    yield g
    g.stop_all()


def gateway_config(
    tmp_path: Path,
    port: int,
    tls: SourceTls,
    client_id: str,
    host: str = "127.0.0.1",
) -> GatewayConfig:
    source = MqttSourceConfig(host=host, port=port, client_id=client_id, tls=tls)
    return config(
        tmp_path,
        port,
        source=source,
        policies=str(TEST_POLICIES),
        routing=Routing(default_region="de"),
    )


def trusted_tls(pki: Pki) -> SourceTls:
    return SourceTls(ca=str(pki.ca.cert), cert=str(pki.gateway.cert), key=str(pki.gateway.key))


def http_status(gw: Gateway, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://{gw.config.metrics_listen}{path}", timeout=5) as r:
            status: int = r.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code


def connected_gauge(gw: Gateway) -> float:
    url = f"http://{gw.config.metrics_listen}/metrics"
    with urllib.request.urlopen(url, timeout=5) as r:
        body = r.read().decode()
    m = re.search(r"^gateway_source_connected (\S+)$", body, re.MULTILINE)
    assert m is not None, "gateway_source_connected missing from /metrics"
    return float(m.group(1))


def written(tmp_path: Path) -> list[Path]:
    """Non-empty files in the sinks and the held store."""
    dirs = [tmp_path / "sinks", *(tmp_path / "state").glob("worker-*/held")]
    return [p for d in dirs for p in d.rglob("*") if p.is_file() and p.stat().st_size]


def connect_trusted(gateways: Gateways, cfg: GatewayConfig) -> Gateway:
    gw = gateways.start(cfg)
    wait_for(gw.is_ready, timeout=10, what="gateway connected over mutual TLS")
    # The subscriptions are sent from the connect callback: wait until the broker knows the
    # session's shared subscription, so a message published now is queued for it.
    time.sleep(0.3)
    return gw


def assert_never_connects(gateways: Gateways, cfg: GatewayConfig, tmp_path: Path) -> None:
    gw = gateways.start(cfg)
    deadline = time.monotonic() + REFUSED_WATCH_S
    while time.monotonic() < deadline:
        assert not gw.source.connected.is_set(), "refused gateway became connected"
        assert not gw.is_ready()
        time.sleep(0.05)
    assert gw.healthy()  # the worker lives on, retrying: healthy but not ready
    assert http_status(gw, "/healthz") == 200
    assert http_status(gw, "/readyz") == 503
    assert connected_gauge(gw) == 0
    assert sum(gw.events.received.values()) == 0
    assert gw.source.queue.qsize() == 0
    assert written(tmp_path) == []
    gateways.stop(gw)


# -- tests ------------------------------------------------------------------------------------


def test_mutual_tls_gateway_forwards_and_is_ready(
    tmp_path: Path,
    pki: Pki,
    start_broker: Callable[[], TlsBroker],
    devices: Callable[[int], Device],
    gateways: Gateways,
) -> None:
    broker = start_broker()
    cfg = gateway_config(tmp_path, broker.tls_port, trusted_tls(pki), f"gw-{free_port()}")
    gw = connect_trusted(gateways, cfg)
    assert gw.source.tls_version in ("TLSv1.2", "TLSv1.3")

    devices(broker.tls_port).send(PROPS_TOPIC, props(7))
    wait_for(lambda: len(records(tmp_path / "sinks", "de")) == 1, timeout=10, what="record")
    [rec] = records(tmp_path / "sinks", "de")
    assert (rec["product"], rec["kind"], rec["region"]) == ("purifier", "props", "de")
    assert rec["data"] == {"id": 7, "method": "props", "params": {"power": "on"}}
    assert DEVICE not in rec["device"]  # pseudonymized
    assert written(tmp_path) == [tmp_path / "sinks" / "de" / "records.jsonl"]
    assert http_status(gw, "/readyz") == 200
    assert connected_gauge(gw) == 1
    # The shipped ACL lets `gateway` read the broker's $SYS counters (its -sys connection).
    url = f"http://{gw.config.metrics_listen}/metrics"
    wait_for(
        lambda: b"gateway_broker_messages_dropped_total" in urllib.request.urlopen(url).read(),
        timeout=15,
        what="the broker's $SYS counters exported",
    )
    # The broker saw the certificate's CN as the username; the ACL let `gateway` read.
    assert re.search(rf"as {re.escape(cfg.source.client_id)}-0 \(.*u'gateway'\)", broker.log())
    gateways.stop(gw)


@pytest.mark.parametrize(
    ("client", "broker_says"),
    [
        pytest.param("impostor-cert", "certificate verify failed", id="impostor-cert"),
        pytest.param("no-cert", "peer did not return a certificate", id="no-cert"),
    ],
)
def test_broker_refuses_gateway_without_a_trusted_certificate(
    tmp_path: Path,
    pki: Pki,
    start_broker: Callable[[], TlsBroker],
    devices: Callable[[int], Device],
    gateways: Gateways,
    client: str,
    broker_says: str,
) -> None:
    broker = start_broker()
    client_id = f"gw-{free_port()}"
    trusted = gateway_config(tmp_path, broker.tls_port, trusted_tls(pki), client_id)
    # The real gateway's persistent session exists; a message waits in it while it is away.
    gateways.stop(connect_trusted(gateways, trusted))
    devices(broker.tls_port).send(PROPS_TOPIC, props(1))

    if client == "impostor-cert":  # CN gateway, from a CA named like the real one
        tls = SourceTls(
            ca=str(pki.ca.cert),
            cert=str(pki.impostor_gateway.cert),
            key=str(pki.impostor_gateway.key),
        )
    else:
        tls = SourceTls(ca=str(pki.ca.cert))
    log_before = len(broker.log())
    # Same client id as the real gateway: the session must not be handed over.
    assert_never_connects(
        gateways, gateway_config(tmp_path, broker.tls_port, tls, client_id), tmp_path
    )
    refused = broker.log()[log_before:]
    assert broker_says in refused, f"broker log does not say {broker_says!r}:\n{refused}"
    assert f"as {client_id}-0" not in refused

    # The real gateway comes back and receives what waited for it: nothing was taken.
    gw = connect_trusted(gateways, trusted)
    wait_for(lambda: len(records(tmp_path / "sinks", "de")) == 1, timeout=10, what="record")
    assert records(tmp_path / "sinks", "de")[0]["data"]["id"] == 1
    gateways.stop(gw)


# The broker's log shows the TLS alert the gateway sent when it rejected the server.
@pytest.mark.parametrize(
    ("server_check", "alert"),
    [
        pytest.param("untrusted-ca", "unknown ca", id="untrusted-ca"),
        pytest.param("wrong-name", "bad certificate", id="wrong-name"),
    ],
)
def test_gateway_refuses_a_broker_it_cannot_verify(
    tmp_path: Path,
    pki: Pki,
    start_broker: Callable[[], TlsBroker],
    devices: Callable[[int], Device],
    gateways: Gateways,
    server_check: str,
    alert: str,
) -> None:
    broker = start_broker()
    client_id = f"gw-{free_port()}"
    trusted = gateway_config(tmp_path, broker.tls_port, trusted_tls(pki), client_id)
    gateways.stop(connect_trusted(gateways, trusted))
    devices(broker.tls_port).send(PROPS_TOPIC, props(2))

    if server_check == "untrusted-ca":  # a CA file that did not sign the server
        tls = SourceTls(
            ca=str(pki.impostor_ca.cert), cert=str(pki.gateway.cert), key=str(pki.gateway.key)
        )
        cfg = gateway_config(tmp_path, broker.tls_port, tls, client_id)
    else:  # the server certificate names 127.0.0.1 only; "localhost" is not in it
        cfg = gateway_config(tmp_path, broker.tls_port, trusted_tls(pki), client_id, "localhost")
    log_before = len(broker.log())
    assert_never_connects(gateways, cfg, tmp_path)
    refused = broker.log()[log_before:]
    assert f"alert {alert}" in refused, f"broker log shows no alert {alert!r}:\n{refused}"
    assert f"as {client_id}-0" not in refused

    gw = connect_trusted(gateways, trusted)
    wait_for(lambda: len(records(tmp_path / "sinks", "de")) == 1, timeout=10, what="record")
    assert records(tmp_path / "sinks", "de")[0]["data"]["id"] == 2
    gateways.stop(gw)
