"""Consent fails closed and erasure erases, against real mosquitto and nats-server: a lost
store never reads as "everyone consents", and a withdrawal leaves none of the device's
records in the file sink, the held store, the spool or the JetStream stream."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from gateway.config import GatewayConfig, Routing, SinkSpec
from gateway.consent.state import ConsentError, ConsentState, parse_consent
from gateway.consent.store import ConsentStore
from gateway.service import Gateway
from gateway.sinks.file.config import FileSinkConfig
from gateway.sinks.mqtt.config import MqttSinkConfig
from gateway.sinks.nats.config import NatsSinkConfig
from gateway.sources.mqtt.config import MqttSourceConfig
from gateway.spool.config import SpoolConfig
from tests.servers import Mosquitto, NatsServer, free_port
from tests.test_service import TEST_POLICIES, Publisher, config, publisher, records, wait_for
from tests.test_sinks import Subscriber

__all__ = ["publisher"]  # the fixture, shared with test_service

PROPS = b'{"id":%d,"method":"props","params":{"aqi":%d}}'


@pytest.fixture
def tmpfs() -> Iterator[Callable[[Path, int], Path]]:
    """A small tmpfs the test mounts (tests run as root), so a full disk is real."""
    mounted: list[Path] = []

    def mount(path: Path, size: int) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True
        )
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _ids(recs: list[dict[str, Any]], pseudonym: str) -> list[int]:
    return [r["data"]["id"] for r in recs if r["device"] == pseudonym]


def _held(gw: Gateway) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in gw.held.all()]


def _corrupt(path: Path, how: str) -> None:
    if how == "deleted":
        for p in path.parent.glob(path.name + "*"):
            if not p.name.endswith(".id"):
                p.unlink()
    elif how == "reset":  # what the JSON store's users did: an empty document
        for p in path.parent.glob(path.name + "-*"):
            p.unlink()
        path.write_bytes(b"{}")
    else:  # garbled: the SQLite header survives, the pages do not
        for p in path.parent.glob(path.name + "-*"):
            p.unlink()
        data = bytearray(path.read_bytes())
        data[100:] = b"\xa5" * (len(data) - 100)
        path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["deleted", "reset", "garbled"])
def test_lost_store_fails_closed_for_data_queued_in_the_session(
    how: str,
    tmp_path: Path,
    mosquitto: Mosquitto,
    publisher: Publisher,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cfg = config(
        tmp_path, mosquitto.port, policies=str(TEST_POLICIES), routing=Routing(default_region="de")
    )
    gw = Gateway(cfg)
    gw.start()
    try:
        wait_for(gw.is_ready, what="gateway ready")
        publisher.send("miot/purifier/devA/consent", b'{"withdrawn": true}', retain=True)
        publisher.send("miot/purifier/devB/consent", b'{"toggles": {}}', retain=True)
        wait_for(lambda: gw.consent.get("purifier", "devA") is not None, what="withdrawal")
        wait_for(lambda: gw.consent.get("purifier", "devB") is not None, what="consent")
        pseudo = gw.engine.products["purifier"].pseudo
        a, b = pseudo.pseudonym("device.id", "devA"), pseudo.pseudonym("device.id", "devB")
    finally:
        gw.stop()
    # The gateway is away: both devices keep publishing, queued in its persistent session.
    for i in range(50):
        publisher.send("miot/purifier/devA/props", PROPS % (i, i))
        publisher.send("miot/purifier/devB/props", PROPS % (i, i))
    store = tmp_path / "state" / "worker-0" / "consent.db"
    _corrupt(store, how)
    caplog.set_level(logging.WARNING, logger="gateway")
    gw2 = Gateway(cfg)
    gw2.start()
    try:
        wait_for(lambda: len(_ids(records(tmp_path / "sinks", "de"), b)) == 50, what="B's data")
        wait_for(
            lambda: gw2.events.outcomes.get(("purifier", "props", "withdrawn"), 0) == 50,
            what="A's data rejected",
        )
        assert _ids(records(tmp_path / "sinks", "de"), a) == []
        lines = [r.getMessage() for r in caplog.records if "consent store" in r.getMessage()]
        expected = {"deleted": "missing", "reset": "damaged", "garbled": "damaged"}[how]
        assert len(lines) == 1
        assert str(store) in lines[0] and f"was {expected}" in lines[0]
        assert "devA" not in lines[0]
        assert gw2.consent.get("purifier", "devA") == ConsentState(withdrawn=True)
    finally:
        gw2.stop()


def test_store_bounds_ids_writes_rows_not_files_and_tells_reset_apart(tmp_path: Path) -> None:
    path = tmp_path / "consent.db"
    store = ConsentStore(path)
    assert store.lost is None  # a first start is not a loss
    store.set_many([("purifier", f"dev{i}", ConsentState()) for i in range(3000)])
    store.set("purifier", "dev7", ConsentState(withdrawn=True))
    with pytest.raises(ValueError, match="128"):
        store.set("purifier", "x" * 60000, ConsentState(withdrawn=True))
    store.close()
    again = ConsentStore(path)
    assert again.lost is None and len(again) == 3000
    assert again.get("purifier", "dev7") == ConsentState(withdrawn=True)
    again.close()
    # Replaced by another valid, empty database: its id does not match the marker.
    path.unlink()
    sqlite3.connect(path).close()
    assert ConsentStore(path).lost == "reset"


def test_consent_errors_name_a_reason_never_message_content() -> None:
    toggles = frozenset({"user_experience"})
    for payload in (b'{"toggles": {"secret-toggle-name": true}}', b'{"withdrawn": "devXYZ"}'):
        with pytest.raises(ConsentError) as exc:
            parse_consent(payload, toggles)
        assert str(exc.value) in {"undeclared_toggle", "invalid_consent"}


def _stream(url: str) -> list[tuple[str, dict[str, Any]]]:
    async def main() -> list[tuple[str, dict[str, Any]]]:
        nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0)
        try:
            js = nc.jetstream()
            try:
                info = await js.stream_info("GATEWAY")
            except nats.js.errors.NotFoundError:
                return []  # the sink creates it with its first record
            out: list[tuple[str, dict[str, Any]]] = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                try:
                    m = await js.get_msg("GATEWAY", seq)
                except nats.js.errors.NotFoundError:
                    continue  # purged
                out.append((m.subject or "", json.loads(m.data or b"{}")))
            return out
        finally:
            await nc.close()

    return asyncio.run(main())


def test_withdrawal_erases_file_sink_held_spool_and_jetstream(
    tmp_path: Path,
    mosquitto: Mosquitto,
    publisher: Publisher,
    nats_server: NatsServer,
) -> None:
    # The topic names the region, so one device has records in every store: de -> NATS
    # (spooled while it is down), us -> file sink, fr (not in the policy) -> held.
    cfg = GatewayConfig(
        source=MqttSourceConfig(
            port=mosquitto.port,
            client_id=f"gw-{free_port()}",
            topic_pattern="miot/{region}/{product}/{device}/{kind}",
        ),
        policies=str(TEST_POLICIES),
        state_dir=str(tmp_path / "state"),
        metrics_listen=f"127.0.0.1:{free_port()}",
        routing=Routing(default_region=None),
        spool=SpoolConfig(retry_s=0.2),
        sinks=(
            SinkSpec(
                type="nats", regions=("de",), nats=NatsSinkConfig(nats_server.url, timeout_s=1)
            ),
            SinkSpec(
                type="file", regions=("us",), file=FileSinkConfig(dir=str(tmp_path / "sinks"))
            ),
        ),
    )
    gw = Gateway(cfg)
    gw.start()
    try:
        wait_for(gw.is_ready, what="gateway ready")
        n = 0
        for region in ("de", "us", "fr"):
            for dev in ("devA", "devB"):
                for _ in range(10):
                    publisher.send(f"miot/{region}/purifier/{dev}/props", PROPS % (n, n))
                    n += 1
        wait_for(lambda: len(_stream(nats_server.url)) == 20, what="20 records in JetStream")
        wait_for(lambda: len(records(tmp_path / "sinks", "us")) == 20, what="20 in the file")
        wait_for(lambda: len(_held(gw)) == 20, what="20 held")
        nats_server.stop()
        for dev in ("devA", "devB"):
            for _ in range(10):
                publisher.send(f"miot/de/purifier/{dev}/props", PROPS % (n, n))
                n += 1
        spooled = gw.sinks["de"]
        wait_for(lambda: spooled.spooled_records == 20, what="20 spooled")

        pseudo = gw.engine.products["purifier"].pseudo
        a, b = pseudo.pseudonym("device.id", "devA"), pseudo.pseudonym("device.id", "devB")
        publisher.send("miot/de/purifier/devA/consent", b'{"withdrawn": true}', retain=True)
        wait_for(lambda: gw.consent.get("purifier", "devA") is not None, what="withdrawal")
        # Erased before the state was stored: nothing of A is left here any more.
        assert _ids(records(tmp_path / "sinks", "us"), a) == []
        assert len(_ids(records(tmp_path / "sinks", "us"), b)) == 10
        assert _ids(_held(gw), a) == []
        assert len(_ids(_held(gw), b)) == 10
        in_spool = [r for r in spooled.spool.peek(100) if r.kind != "_erasure"]
        assert [json.loads(r.body)["device"] for r in in_spool] == [b] * 10
        # NATS was down: the purge waits in the spool, behind B's records, and runs when
        # the server is back.
        nats_server.start()
        wait_for(lambda: spooled.spooled_records == 0, what="spool drained")
        stream = _stream(nats_server.url)
        data = [d for subject, d in stream if not subject.endswith(".erasure")]
        assert [d["device"] for d in data] == [b] * 20
        assert [d["device"] for s, d in stream if s.endswith(".erasure")] == [a]
        erased = gw.events.erased
        assert erased.labels("spool", "de")._value.get() == 10
        assert erased.labels("file", "us")._value.get() == 10
        assert erased.labels("held", "-")._value.get() == 10
    finally:
        gw.stop()


def test_disk_full_on_the_held_and_consent_path_waits_and_loses_nothing(
    tmp_path: Path,
    mosquitto: Mosquitto,
    publisher: Publisher,
    tmpfs: Callable[[Path, int], Path],
) -> None:
    state = tmpfs(tmp_path / "state", 2 * 1024 * 1024)
    cfg = config(
        tmp_path,
        mosquitto.port,
        policies=str(TEST_POLICIES),
        routing=Routing(default_region="fr"),  # not named by the policy: every record held
        spool=SpoolConfig(retry_s=0.1),
    )
    gw = Gateway(cfg)
    gw.start()
    failures = gw.events.state_write_failures
    filler = state / "filler"
    try:
        wait_for(gw.is_ready, what="gateway ready")
        # The consent path: the withdrawal waits for space, then is stored.
        _fill(filler)
        publisher.send("miot/purifier/devC/consent", b'{"withdrawn": true}', retain=True)
        wait_for(lambda: failures.labels("consent")._value.get() >= 2, what="consent retried")
        assert gw.healthy() and gw.consent.get("purifier", "devC") is None
        filler.unlink()
        wait_for(lambda: gw.consent.get("purifier", "devC") is not None, what="consent stored")
        # The held path: records wait, unacknowledged, then every one is held.
        _fill(filler)
        for i in range(100):
            publisher.send("miot/purifier/devB/props", PROPS % (i, i))
        wait_for(lambda: failures.labels("held")._value.get() >= 2, what="held write retried")
        assert gw.healthy()
        filler.unlink()
        wait_for(lambda: gw.held.records == 100, what="every record held")
        assert sorted(r["data"]["id"] for r in _held(gw)) == list(range(100))
        assert gw.healthy()
    finally:
        gw.stop()


def _fill(path: Path) -> None:
    with path.open("wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass


def test_erasure_request_follows_every_record_already_in_flight(
    tmp_path: Path, mosquitto: Mosquitto, publisher: Publisher
) -> None:
    """The worker enforces a batch while the previous one's MQTT sink writes wait for their
    PUBACKs. A withdrawal amid a stream: every record of the device the regional broker got
    comes before the erasure request (an in-order consumer deletes them all), none after."""
    cfg = config(
        tmp_path,
        mosquitto.port,
        policies=str(TEST_POLICIES),
        routing=Routing(default_region="de"),
        sinks=(
            SinkSpec(
                type="mqtt",
                mqtt=MqttSinkConfig(host="127.0.0.1", port=mosquitto.port, topic_prefix="out"),
            ),
        ),
    )
    sub = Subscriber(mosquitto.port, topic="out/#")
    gw = Gateway(cfg)
    gw.start()
    try:
        wait_for(gw.is_ready, what="gateway ready")
        n = 3000
        infos = []
        for i in range(n):
            if i == n // 3:
                publisher.send("miot/purifier/devA/consent", b'{"withdrawn": true}', retain=True)
            dev = "devA" if i % 2 else "devB"
            infos.append(publisher.client.publish(f"miot/purifier/{dev}/props", PROPS % (i, i)))
        for info in infos:
            info.wait_for_publish(30)
        wait_for(lambda: gw.source.unacked == 0 and gw.source.queue.empty(), timeout=30)
        wait_for(lambda: any(t == "out/de/erasure" for t, _, _ in sub.msgs), what="request")
        time.sleep(0.5)
        pseudo = gw.engine.products["purifier"].pseudo
        a = pseudo.pseudonym("device.id", "devA")
        got = list(sub.msgs)
    finally:
        gw.stop()
        sub.close()
    requests = [i for i, (t, _, _) in enumerate(got) if t == "out/de/erasure"]
    assert len(requests) == 1 and json.loads(got[requests[0]][1])["device"] == a
    of_a = [i for i, (t, body, _) in enumerate(got) if t.endswith("/props") and a in str(body)]
    assert of_a, "records of the device before its withdrawal"
    assert max(of_a) < requests[0]
    of_b = [json.loads(b)["data"]["id"] for t, b, _ in got if t.endswith("/props")]
    assert len([i for i in of_b if i % 2 == 0]) == n // 2  # devB: every one, nothing lost
