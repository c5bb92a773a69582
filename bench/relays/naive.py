"""Contender 2, what users write: a paho-mqtt relay with a JSON allowlist filter.

Subscribes ``miot/#`` QoS1; for each message ``json.loads`` the payload, keeps only the
top-level keys allowed for its ``<product>/<kind>`` (a JSON file ``{"product/kind": [keys]}``),
``json.dumps`` the result and publishes it QoS1 to ``<out-prefix>/<topic without its first
level>``. Messages of an unknown product/kind, or that are not a JSON object, are dropped.
No pseudonymisation, no coarsening, no nested filtering, no consent, no residency: a whole
allowed sub-object leaves as it came. paho acknowledges each incoming message when the
callback returns. Prints ``ready`` once subscribed; stops on SIGTERM/SIGINT or after
``--max-seconds``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode


def load_allowlist(path: Path) -> dict[str, frozenset[str]]:
    raw: dict[str, list[str]] = json.loads(path.read_text())
    return {k: frozenset(v) for k, v in raw.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="naive JSON-filtering MQTT relay (benchmark)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--allow", type=Path, required=True, help='JSON {"product/kind": [keys]}')
    p.add_argument("--out-prefix", default="relay/naive")
    p.add_argument("--max-inflight", type=int, default=20, help="paho default: 20")
    p.add_argument("--max-seconds", type=float, default=1800.0)
    args = p.parse_args(argv)
    prefix: str = args.out_prefix
    allow = load_allowlist(args.allow)

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-relay-naive")
    client.max_inflight_messages_set(args.max_inflight)
    client.max_queued_messages_set(0)

    def on_connect(c: mqtt.Client, _u: Any, _f: mqtt.ConnectFlags, rc: ReasonCode, _p: Any) -> None:
        if not rc.is_failure:
            c.subscribe("miot/#", qos=1)

    def on_subscribe(_c: mqtt.Client, _u: Any, _mid: int, _rc: Any, _p: Any) -> None:
        print("ready", flush=True)

    def on_message(c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        parts = msg.topic.split("/")
        if len(parts) != 4:
            return
        keys = allow.get(f"{parts[1]}/{parts[3]}")
        if keys is None:
            return
        try:
            doc = json.loads(msg.payload)
        except ValueError:
            return
        if not isinstance(doc, dict):
            return
        out = {k: v for k, v in doc.items() if k in keys}
        c.publish(f"{prefix}/{msg.topic.partition('/')[2]}", json.dumps(out), qos=1)

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message

    done = threading.Event()

    def on_signal(_s: int, _f: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    client.connect(args.host, args.port)
    client.loop_start()
    done.wait(args.max_seconds)
    client.disconnect()
    client.loop_stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
