"""Contender: the raw relay on the gateway's own MQTT layer (gateway/mqtt: asyncio and the
`mqtt5` codec), with the gateway's delivery rule and no processing at all.

Subscribes ``miot/#`` QoS1 (MQTT v5, Receive Maximum 1000, enforced by pausing reads) and
republishes every payload unchanged, QoS1, to ``<out-prefix>/<topic without its first
level>``, at most the broker's Receive Maximum outstanding. Unlike ``raw`` (paho acks on
receipt) each incoming message is acknowledged only after its copy's PUBACK, in arrival
order: what the gateway does. Beside ``raw`` it measures the MQTT client alone; beside the
gateway, what enforcement costs. Prints ``ready`` once subscribed; stops on SIGTERM/SIGINT
or after ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections import deque

import mqtt5

from gateway.mqtt import Connection, connect

WINDOW = 1000  # messages received and not yet acknowledged (the gateway's default)


class Relay:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.src: Connection | None = None
        self.out: Connection | None = None
        self.out_window = 20
        self.waiting: deque[mqtt5.PublishPacket] = deque()  # received, not yet republished
        self.order: deque[tuple[int, int]] = deque()  # (incoming id, outgoing id), arrival order
        self.out_ids: dict[int, int] = {}  # outgoing packet ids awaiting PUBACK
        self.done: set[int] = set()  # outgoing ids acknowledged, not yet at the head

    def held(self) -> int:
        return len(self.waiting) + len(self.order)

    def on_publish(self, p: mqtt5.PublishPacket) -> bool:
        self.waiting.append(p)
        self.pump()
        return self.held() < WINDOW

    def pump(self) -> None:
        out = self.out
        if out is None:
            return
        chunk = []
        while self.waiting and len(self.out_ids) < self.out_window:
            p = self.waiting.popleft()
            mid = out.packet_id(self.out_ids)
            self.out_ids[mid] = p.packet_id or 0
            self.order.append((p.packet_id or 0, mid))
            topic = f"{self.prefix}/{p.topic.partition('/')[2]}"
            chunk.append(
                mqtt5.PublishPacket(
                    topic, p.payload, qos=mqtt5.QoS.AT_LEAST_ONCE, packet_id=mid
                ).write()
            )
        if chunk:
            out.write(b"".join(chunk))

    def on_puback(self, mid: int, _code: int) -> None:
        if self.out_ids.pop(mid, None) is None:
            return
        self.done.add(mid)
        acks = []
        while self.order and self.order[0][1] in self.done:
            in_mid, out_mid = self.order.popleft()
            self.done.discard(out_mid)
            acks.append(mqtt5.PubAckPacket(in_mid).write())
        src = self.src
        if src is not None and acks:
            src.write(b"".join(acks))
            if src.paused and self.held() < WINDOW:
                src.resume()
        self.pump()


async def run(args: argparse.Namespace) -> int:
    relay = Relay(args.out_prefix)

    def out_setup(c: Connection) -> None:
        c.on_puback = relay.on_puback

    def src_setup(c: Connection) -> None:
        c.on_publish = relay.on_publish

    relay.out, connack = await connect(
        args.host,
        args.port,
        mqtt5.ConnectPacket("bench-relay-mqtt5-out", clean_start=True, keep_alive=60),
        tls=None,
        timeout=10,
        setup=out_setup,
    )
    relay.out_window = connack.receive_max
    relay.src, _ = await connect(
        args.host,
        args.port,
        mqtt5.ConnectPacket(
            "bench-relay-mqtt5", clean_start=True, keep_alive=60, receive_max=WINDOW
        ),
        tls=None,
        timeout=10,
        setup=src_setup,
    )
    sub = mqtt5.SubscribePacket(
        relay.src.packet_id(), [mqtt5.TopicFilter("miot/#", max_qos=mqtt5.QoS.AT_LEAST_ONCE)]
    )
    await relay.src.request(sub)
    print("ready", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), args.max_seconds)
    relay.src.close()
    relay.out.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="raw MQTT relay on gateway/mqtt (benchmark contender)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--out-prefix", default="relay/raw-mqtt5")
    p.add_argument("--max-seconds", type=float, default=1800.0)
    return asyncio.run(run(p.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
