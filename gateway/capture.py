"""`gateway capture`: record what devices publish, as the JSONL `enforce` and `explain --input`
read. The file holds raw messages (identifiers, addresses, secrets): it is created mode 0600,
and the command says so."""

from __future__ import annotations

import base64
import os
import sys
import threading
from pathlib import Path
from typing import Any

import msgspec
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from gateway.config import StartupError
from gateway.route.topics import TopicScheme
from gateway.sources.mqtt.source import KINDS

_encode = msgspec.json.Encoder().encode


def line(topic: str, payload: bytes) -> bytes:
    """One capture line: the payload as a JSON string when it is UTF-8 (exact bytes kept),
    else base64."""
    try:
        doc: dict[str, str] = {"topic": topic, "payload": payload.decode("utf-8")}
    except UnicodeDecodeError:
        doc = {"topic": topic, "payload_b64": base64.b64encode(payload).decode()}
    return _encode(doc) + b"\n"


def capture(
    broker: str,
    out: Path,
    topics: TopicScheme,
    count: int | None = None,
    duration: float | None = None,
) -> int:
    host, _, port_s = broker.rpartition(":")
    if not host or not port_s.isdigit():
        raise StartupError(f"--broker {broker}: expected HOST:PORT")
    port = int(port_s)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # also when the file existed with a wider mode
    print(
        f"gateway capture: {out} will hold raw device messages (identifiers, addresses, "
        "secrets): mode 0600, keep it private and delete it when done",
        file=sys.stderr,
    )
    n = 0
    done = threading.Event()
    lock = threading.Lock()
    with os.fdopen(fd, "wb") as fh:

        def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
            nonlocal n
            with lock:
                if done.is_set():
                    return
                fh.write(line(msg.topic, bytes(msg.payload)))
                fh.flush()
                n += 1
                if count is not None and n >= count:
                    done.set()

        def on_subscribe(*_args: Any) -> None:
            print(f"gateway capture: subscribed on {host}:{port}", file=sys.stderr, flush=True)

        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"gateway-capture-{os.getpid()}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        client.on_message = on_message
        client.on_subscribe = on_subscribe
        try:
            client.connect(host, port, clean_start=True)
        except OSError as exc:
            raise StartupError(f"--broker {host}:{port}: {exc.strerror or exc}") from None
        client.subscribe([(topics.subscription(k), 1) for k in (*KINDS, "consent")])
        client.loop_start()
        try:
            done.wait(duration)
        except KeyboardInterrupt:
            pass
        finally:
            done.set()
            client.disconnect()
            client.loop_stop()
    print(f"gateway capture: {n} message(s) written to {out}", file=sys.stderr)
    return 0
