"""Sinks that authenticate: NATS (user + password, nkey, mutual TLS) and MQTT (username +
password), against real servers that refuse everyone else."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import nacl.signing
import nkeys
import pytest

from gateway.sinks.base import OutRecord, SinkError
from gateway.sinks.mqtt.config import MqttSinkConfig
from gateway.sinks.mqtt.sink import MqttSink
from gateway.sinks.nats.config import NatsSinkConfig, NatsTlsConfig
from gateway.sinks.nats.sink import NatsSink
from tests.certs import CertificateAuthority
from tests.servers import Mosquitto, NatsServer

RECORD = OutRecord("00" * 16, "purifier", "info", "de", b'{"device":"d0","n":1}')
PASSWORD = "pw-QZ-7781"


def _write_ok(sink: NatsSink | MqttSink) -> None:
    try:
        sink.open()
        sink.write([RECORD])
    finally:
        sink.close()


def _refused(sink: NatsSink | MqttSink) -> None:
    with pytest.raises(SinkError) as err:
        _write_ok(sink)
    assert PASSWORD not in str(err.value)


@pytest.fixture
def tls_nats(tmp_path: Path) -> Iterator[tuple[NatsServer, CertificateAuthority]]:
    ca = CertificateAuthority(tmp_path / "pki", "nats")
    server = ca.server("nats", ips=("127.0.0.1",))
    nats = NatsServer(
        tmp_path / "nats",
        config=(
            f'authorization {{ user: gw, password: "{PASSWORD}" }}\n'
            f'tls {{ cert_file: "{server.cert}", key_file: "{server.key}", '
            f'ca_file: "{ca.cert}", verify: true, timeout: 5 }}\n'
        ),
    )
    nats.start()
    try:
        yield nats, ca
    finally:
        nats.stop()


def test_nats_user_password_and_mutual_tls(
    tls_nats: tuple[NatsServer, CertificateAuthority], monkeypatch: pytest.MonkeyPatch
) -> None:
    nats, ca = tls_nats
    client = ca.client("gateway")
    tls = NatsTlsConfig(ca=str(ca.cert), cert=str(client.cert), key=str(client.key))
    url = f"tls://127.0.0.1:{nats.port}"
    monkeypatch.setenv("GW_TEST_NATS_PW", PASSWORD)
    auth = {"user": "gw", "password_env": "GW_TEST_NATS_PW", "timeout_s": 3.0}
    _write_ok(NatsSink(NatsSinkConfig(url=url, tls=tls, **auth), "de"))  # type: ignore[arg-type]
    # Without a client certificate, with a wrong password, without the password: refused.
    no_cert = NatsTlsConfig(ca=str(ca.cert))
    _refused(NatsSink(NatsSinkConfig(url=url, tls=no_cert, **auth), "de"))  # type: ignore[arg-type]
    monkeypatch.setenv("GW_TEST_NATS_PW", "wrong")
    _refused(NatsSink(NatsSinkConfig(url=url, tls=tls, **auth), "de"))  # type: ignore[arg-type]
    monkeypatch.delenv("GW_TEST_NATS_PW")
    _refused(NatsSink(NatsSinkConfig(url=url, tls=tls, **auth), "de"))  # type: ignore[arg-type]


def test_nats_nkey(tmp_path: Path) -> None:
    seed = nkeys.encode_seed(bytes(nacl.signing.SigningKey.generate()), nkeys.PREFIX_BYTE_USER)
    public = nkeys.from_seed(bytearray(seed)).public_key.decode()
    seed_file = tmp_path / "gateway.nk"
    seed_file.write_bytes(seed + b"\n")
    nats = NatsServer(
        tmp_path / "nats", config=f'authorization {{ users = [ {{ nkey: "{public}" }} ] }}\n'
    )
    nats.start()
    try:
        _write_ok(NatsSink(NatsSinkConfig(url=nats.url, nkey=str(seed_file), timeout_s=3.0), "de"))
        _refused(NatsSink(NatsSinkConfig(url=nats.url, timeout_s=3.0), "de"))
    finally:
        nats.stop()


def test_mqtt_username_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pwfile = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pwfile), "gw", PASSWORD], check=True)
    pwfile.chmod(0o600)
    broker = Mosquitto(
        tmp_path / "mosquitto",
        extra_config=["allow_anonymous false", f"password_file {pwfile}"],
    )
    broker.start()
    try:
        cfg = {"host": "127.0.0.1", "port": broker.port, "timeout_s": 3.0}
        monkeypatch.setenv("GW_TEST_MQTT_PW", PASSWORD)
        good = MqttSinkConfig(**cfg, username="gw", password_env="GW_TEST_MQTT_PW")  # type: ignore[arg-type]
        _write_ok(MqttSink(good, "de"))
        _refused(MqttSink(MqttSinkConfig(**cfg), "de"))  # type: ignore[arg-type]
        monkeypatch.setenv("GW_TEST_MQTT_PW", "wrong")
        _refused(MqttSink(good, "de"))
        monkeypatch.delenv("GW_TEST_MQTT_PW")
        _refused(MqttSink(good, "de"))
    finally:
        broker.stop()
