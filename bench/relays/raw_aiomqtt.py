"""Contender ``raw-aiomqtt``: ``relays/raw.py`` written with aiomqtt 2.x (asyncio).

The same relay as ``raw.py``: MQTT 3.1.1 (paho's and aiomqtt's default), subscribes
``miot/#`` QoS1 and republishes every payload unchanged, QoS1, to
``<out-prefix>/<topic without its first level>``. It measures what the asyncio layer costs
on top of paho, which aiomqtt 2.x wraps (paho does the protocol; aiomqtt drives its socket
from the event loop and turns callbacks into futures and a message queue).

To be comparable with ``raw.py`` (paho in-flight window 20, publish without waiting), the
relay keeps up to ``--max-inflight`` (20) publishes awaiting their PUBACK at once, one task
each; ``--max-inflight 1`` is the plain ``async for m in client.messages: await
client.publish(...)`` loop, one round trip per message. As with ``raw.py``, an incoming
message is acknowledged as soon as paho has read it (aiomqtt queues it), before its copy is
acknowledged: at-most-once across a crash. Prints ``ready`` once subscribed; stops on
SIGTERM/SIGINT or after ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import signal
import sys

try:
    import aiomqtt
except ImportError:  # the `bench` extra: pip install -e '.[bench]'
    sys.exit("raw_aiomqtt: aiomqtt is not installed: pip install -e '.[bench]'")


async def relay(host: str, port: int, prefix: str, window: int) -> None:
    client = aiomqtt.Client(
        host,
        port,
        identifier="bench-relay-raw-aiomqtt",
        protocol=aiomqtt.ProtocolVersion.V311,
        max_inflight_messages=window,  # paho's own window, as in raw.py
        max_queued_outgoing_messages=0,  # unbounded, as in raw.py
    )
    # aiomqtt logs a warning on every publish while more than this many are pending.
    client.pending_calls_threshold = window
    async with client:
        await client.subscribe("miot/#", qos=1)
        print("ready", flush=True)
        if window <= 1:
            async for msg in client.messages:
                await client.publish(
                    f"{prefix}/{msg.topic.value.partition('/')[2]}",
                    msg.payload,
                    qos=1,
                    timeout=math.inf,
                )
            return
        slots = asyncio.Semaphore(window)

        async def forward(topic: str, payload: bytes) -> None:
            try:
                # No timeout: under saturation a PUBACK may take longer than the default 10 s.
                await client.publish(topic, payload, qos=1, timeout=math.inf)
            finally:
                slots.release()

        async with asyncio.TaskGroup() as tasks:  # keeps the tasks referenced
            async for msg in client.messages:
                await slots.acquire()
                tasks.create_task(
                    forward(f"{prefix}/{msg.topic.value.partition('/')[2]}", msg.payload)
                )


async def run(host: str, port: int, prefix: str, window: int, max_seconds: float) -> None:
    main = asyncio.create_task(relay(host, port, prefix, window))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, main.cancel)
    with contextlib.suppress(asyncio.CancelledError, TimeoutError):
        # Cancelling leaves `async with client` through __aexit__: a clean DISCONNECT.
        await asyncio.wait_for(main, max_seconds)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="raw MQTT relay with aiomqtt (benchmark contender)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--out-prefix", default="relay/raw-aiomqtt")
    p.add_argument(
        "--max-inflight",
        type=int,
        default=20,
        help="publishes awaiting PUBACK at once (paho default: 20; 1 = await each publish)",
    )
    p.add_argument("--max-seconds", type=float, default=1800.0)
    args = p.parse_args(argv)
    asyncio.run(run(args.host, args.port, args.out_prefix, args.max_inflight, args.max_seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
