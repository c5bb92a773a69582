"""Contender 1, the limit: a paho-mqtt relay that does no processing at all.

Subscribes ``miot/#`` QoS1 and republishes every payload unchanged, QoS1, to
``<out-prefix>/<topic without its first level>``. paho acknowledges each incoming message
when the callback returns, before the republished copy is acknowledged: at-most-once
across a crash, unlike the gateway. Prints ``ready`` once subscribed; stops on
SIGTERM/SIGINT or after ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="raw MQTT relay (benchmark contender)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--out-prefix", default="relay/raw")
    p.add_argument("--max-inflight", type=int, default=20, help="paho default: 20")
    p.add_argument("--max-seconds", type=float, default=1800.0)
    args = p.parse_args(argv)
    prefix: str = args.out_prefix

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-relay-raw")
    client.max_inflight_messages_set(args.max_inflight)
    client.max_queued_messages_set(0)  # unbounded: the relay never refuses a message

    def on_connect(c: mqtt.Client, _u: Any, _f: mqtt.ConnectFlags, rc: ReasonCode, _p: Any) -> None:
        if not rc.is_failure:
            c.subscribe("miot/#", qos=1)

    def on_subscribe(_c: mqtt.Client, _u: Any, _mid: int, _rc: Any, _p: Any) -> None:
        print("ready", flush=True)

    def on_message(c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        c.publish(f"{prefix}/{msg.topic.partition('/')[2]}", msg.payload, qos=1)

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
