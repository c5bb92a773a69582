"""`gateway run` killed with SIGKILL while a batch is in flight to an MQTT sink: every message
the devices published reaches the regional broker after a restart (at least once), and
nothing is lost or held."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tests.servers import Mosquitto
from tests.test_service import (  # the fixture is shared with the service tests
    Publisher,
    _run_gateway,
    _write_config,
    wait_for,
)
from tests.test_sinks import Subscriber


def _ready(cfg: Path) -> bool:
    listen = tomllib.loads(cfg.read_text())["metrics_listen"]
    try:
        with urllib.request.urlopen(f"http://{listen}/readyz", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def _mqtt_sink(port: int) -> str:
    # Generous timeout and keepalive: while the test holds the sink broker stopped, the
    # gateway must keep its batch in flight, not give it up to the spool.
    return f"""[[sinks]]
type = "mqtt"
mqtt = {{ host = "127.0.0.1", port = {port}, timeout_s = 300.0, keepalive_s = 300 }}"""


def _unread_bytes(port: int, skip_client_port: int) -> int:
    """Bytes clients sent to the broker on `port` that it has not read yet (its Recv-Q in
    /proc/net/tcp), leaving out the connection from `skip_client_port`."""
    total = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        _sl, local, remote, state, queues, *_ = line.split()
        if (
            state == "01"  # ESTABLISHED
            and int(local.rsplit(":", 1)[1], 16) == port
            and int(remote.rsplit(":", 1)[1], 16) != skip_client_port
        ):
            total += int(queues.split(":")[1], 16)
    return total


def _hold_a_batch(broker: Mosquitto, sub_port: int, publish_one: Callable[[], None]) -> int:
    """Stop the sink broker (SIGSTOP) with several records sent to it, unread: a batch in
    flight whose PUBACKs cannot come. Returns the bytes in flight. Devices go on publishing
    meanwhile, so a gateway that had caught up still has a batch to send."""

    def in_flight() -> bool:
        publish_one()
        return _unread_bytes(broker.port, sub_port) > 0

    for _ in range(5):
        broker.pause()
        wait_for(in_flight, timeout=60, what="a batch in flight to the stopped sink broker")
        # The worker gets to waiting for this batch's PUBACKs; an ack sent to the source
        # before they come would now be a loss.
        time.sleep(1.0)
        unread = _unread_bytes(broker.port, sub_port)
        # More than two records: once the gateway is gone the broker takes one or two, then
        # notices, and drops the rest of what it had not read.
        if unread > 1000:
            return unread
        broker.resume()  # caught the tail of a batch: try the next one
        time.sleep(0.1)
    return unread


def _ids_seen(sub: Subscriber) -> list[int]:
    with sub.cond:
        msgs = list(sub.msgs)
    return [json.loads(body)["data"]["id"] for _topic, body, _props in msgs]


def _held(cfg: Path) -> int:
    """Records in the held stores, as `gateway held list` reports them."""
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "held", "list", "--config", str(cfg)],
        capture_output=True,
        timeout=60,
        check=True,
    )
    return sum(int(row.split(b"\t")[-1]) for row in out.stdout.splitlines()[1:])


def test_kill_9_with_a_batch_in_flight_to_an_mqtt_sink_loses_nothing(
    tmp_path: Path, mosquitto: Mosquitto, sink_mosquitto: Mosquitto
) -> None:
    # Subscribed (QoS 1, persistent session) before anything is published, connected throughout.
    sub = Subscriber(sink_mosquitto.port, topic="gateway/#")
    sock = sub.client.socket()
    assert isinstance(sock, socket.socket)
    sub_port: int = sock.getsockname()[1]
    pub = Publisher(mosquitto.port)
    cfg = _write_config(tmp_path, mosquitto.port, extra=_mqtt_sink(sink_mosquitto.port))
    proc = _run_gateway(cfg)
    n, half = 3000, 1500
    in_flight = 0
    to_publish = iter(range(n))

    def publish(i: int | None) -> None:
        if i is not None:
            pub.client.publish(
                "miot/purifier/dev1/props",
                b'{"id":%d,"method":"props","params":{"aqi":%d}}' % (i, i),
                qos=1,
            )

    try:
        wait_for(lambda: _ready(cfg), timeout=60, what="gateway ready")
        time.sleep(0.3)  # its subscription granted: the session keeps what comes from now on
        for i in to_publish:
            publish(i)
            if i == half:
                wait_for(lambda: len(_ids_seen(sub)) > 0, timeout=60, what="records at the sink")
                in_flight = _hold_a_batch(
                    sink_mosquitto, sub_port, lambda: publish(next(to_publish, None))
                )
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                sink_mosquitto.resume()
                proc = _run_gateway(cfg)
        # On a timeout the counts below say what is missing.
        with contextlib.suppress(AssertionError):
            wait_for(
                lambda: set(_ids_seen(sub)) >= set(range(n)),
                timeout=120,
                what="every message at the sink broker after kill -9",
            )
    finally:
        sink_mosquitto.resume()  # a failure above may have left it stopped
        proc.terminate()
        proc.wait(20)
        pub.close()
        sub.close()
    ids = _ids_seen(sub)
    delivered = len(set(ids) & set(range(n)))
    held = _held(cfg)
    lost = n - delivered - held
    print(
        f"\nkill -9, mqtt sink: published={n} delivered={delivered} "
        f"duplicates={len(ids) - len(set(ids))} held={held} lost={lost} "
        f"in_flight_bytes={in_flight}"
    )
    assert in_flight > 0
    assert set(ids) <= set(range(n))
    assert held == 0
    assert lost == 0
