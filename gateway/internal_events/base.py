"""What every area of internal events shares: the log line format, its rate limit, and the
attributes each area's events may use (one ``Events`` object holds them all)."""

from __future__ import annotations

import logging
import time

from prometheus_client import CollectorRegistry

log = logging.getLogger("gateway")


def emit(level: int, text: str, **labels: object) -> None:
    """One log line: `text key=value ...` as text; as JSON, each label its own field. Labels
    carry the metric label names and their bounded values, never a value from a message."""
    if not log.isEnabledFor(level):
        return
    tail = " ".join(f"{k}={v}" for k, v in labels.items())
    log.log(level, "%s %s", text, tail, extra={"text": text, "labels": labels})


class RateLimitedLog:
    """At most `burst` lines per key per minute: a flood of bad messages must not become a
    flood of log lines."""

    def __init__(self, burst: int = 5) -> None:
        self.burst = burst
        self._window: dict[str, tuple[float, int]] = {}

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        start, n = self._window.get(key, (now, 0))
        if now - start >= 60.0:
            start, n = now, 0
        self._window[key] = (start, n + 1)
        return n < self.burst


class Area:
    """Base of each area's events; ``Events`` sets these."""

    registry: CollectorRegistry
    _ratelog: RateLimitedLog
