"""The process's network event loop: one asyncio loop in a daemon thread that every MQTT
connection of the gateway (source and sinks) runs on.

Sockets, packet parsing and acknowledgements live here; the worker thread hands it whole
batches (acknowledgements, publishes), never single messages, so the cross-thread cost is
paid once per batch. The standard event loop: uvloop measured no faster on this path
(bench/RESULTS.md).
"""

from __future__ import annotations

import asyncio
import threading

__all__ = ["network_loop"]

_lock = threading.Lock()
_loops: list[asyncio.AbstractEventLoop] = []  # the one loop, once started


def network_loop() -> asyncio.AbstractEventLoop:
    """The running network loop, started on first use; it lives as long as the process."""
    with _lock:
        if not _loops:
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            threading.Thread(target=run, name="gateway-network", daemon=True).start()
            ready.wait()
            _loops.append(loop)
        return _loops[0]
