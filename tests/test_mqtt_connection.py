"""The data connection (gateway/mqtt) against a real mosquitto: keepalive holds an idle
connection, and a broker that hangs with its socket open is noticed by the missing
PINGRESPs, left, and rejoined once it answers again, with nothing lost."""

from __future__ import annotations

import json
import queue
import threading
import time

from gateway.sources.mqtt import MqttSource
from gateway.sources.mqtt.config import MqttSourceConfig
from tests.servers import Mosquitto, free_port
from tests.test_service import Publisher, wait_for


class Events:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: list[tuple[bool, str]] = []

    def __call__(self, up: bool, what: str) -> None:
        with self.lock:
            self.seen.append((up, what))


def source(port: int, events: Events) -> MqttSource:
    cfg = MqttSourceConfig(port=port, client_id=f"conn-{free_port()}", keepalive_s=1)
    return MqttSource(cfg, on_connection=events)


def drain(src: MqttSource, want: set[int], timeout: float = 10) -> set[int]:
    """Take and acknowledge deliveries until every id in `want` came (redeliveries of
    earlier ones may come too: at-least-once), then until the source holds nothing."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not (want <= seen and src.unacked == 0):
        try:
            d = src.queue.get(timeout=0.2)
        except queue.Empty:
            continue
        seen.add(json.loads(d.payload)["id"])
        src.ack(d)
    return seen


def test_keepalive_holds_an_idle_connection(mosquitto: Mosquitto) -> None:
    events = Events()
    src = source(mosquitto.port, events)
    src.start()
    try:
        wait_for(src.connected.is_set, what="connected")
        time.sleep(4.0)  # four keepalive periods without a message
        assert src.connected.is_set()
        assert events.seen == [(True, "")]
    finally:
        src.stop()


def test_a_hung_broker_is_left_and_rejoined_without_loss(mosquitto: Mosquitto) -> None:
    events = Events()
    src = source(mosquitto.port, events)
    src.start()
    pub = Publisher(mosquitto.port)
    try:
        wait_for(src.connected.is_set, what="connected")
        time.sleep(0.3)  # the subscription is in place
        for i in range(50):
            pub.send("miot/purifier/dev1/props", b'{"id":%d}' % i)
        assert drain(src, set(range(50))) >= set(range(50))
        mosquitto.pause()
        try:
            # PINGREQ every 0.5 s; no reply for 1.5 s: the connection is given up.
            wait_for(lambda: not src.connected.is_set(), timeout=5, what="hang noticed")
        finally:
            mosquitto.resume()
        wait_for(src.connected.is_set, timeout=15, what="rejoined")
        time.sleep(0.3)
        published = set(range(50, 100))
        for i in sorted(published):
            pub.send("miot/purifier/dev1/props", b'{"id":%d}' % i)
        delivered = drain(src, published) & published
        assert (len(published), len(delivered), len(published - delivered)) == (50, 50, 0)
        assert src.unacked == 0  # everything taken was acknowledged on the new connection
        assert any(not up and "keepalive timeout" in what for up, what in events.seen)
    finally:
        pub.close()
        src.stop()
