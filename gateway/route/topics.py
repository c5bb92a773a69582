"""Topic layout: a pattern of `/`-separated segments with {product}, {device}, {kind} and an
optional {region} capture, e.g. `miot/{product}/{device}/{kind}`."""

from __future__ import annotations

from typing import NamedTuple

_NAMES = ("product", "device", "kind", "region")
TOPIC_MEMO = 65536


class TopicError(Exception):
    pass


class Parsed(NamedTuple):
    product: str
    device: str
    kind: str
    region: str | None


class TopicScheme:
    def __init__(self, pattern: str = "miot/{product}/{device}/{kind}") -> None:
        self.pattern = pattern
        segs = pattern.split("/")
        self._fixed: list[tuple[int, str]] = []
        self._pos: dict[str, int] = {}
        for i, s in enumerate(segs):
            if s.startswith("{") and s.endswith("}"):
                name = s[1:-1]
                if name not in _NAMES or name in self._pos:
                    raise TopicError(f"topic pattern {pattern!r}: bad placeholder {s!r}")
                self._pos[name] = i
            elif "{" in s or "+" in s or "#" in s:
                raise TopicError(f"topic pattern {pattern!r}: bad segment {s!r}")
            else:
                self._fixed.append((i, s))
        for need in ("product", "device", "kind"):
            if need not in self._pos:
                raise TopicError(f"topic pattern {pattern!r}: needs {{{need}}}")
        self._n = len(segs)
        self._memo: dict[str, Parsed] = {}

    def parse(self, topic: str) -> Parsed | None:
        # A fleet repeats its topics (device x kind): remember the parses, bounded, since
        # topics are chosen by whoever publishes.
        hit = self._memo.get(topic)
        if hit is not None:
            return hit
        parsed = self._parse(topic)
        if parsed is not None:
            if len(self._memo) >= TOPIC_MEMO:
                self._memo.clear()
            self._memo[topic] = parsed
        return parsed

    def _parse(self, topic: str) -> Parsed | None:
        segs = topic.split("/")
        if len(segs) != self._n:
            return None
        for i, s in self._fixed:
            if segs[i] != s:
                return None
        p = self._pos
        region = segs[p["region"]] if "region" in p else None
        return Parsed(segs[p["product"]], segs[p["device"]], segs[p["kind"]], region)

    def topic(self, product: str, device: str, kind: str, region: str | None = None) -> str:
        values = {"product": product, "device": device, "kind": kind, "region": region or ""}
        return "/".join(
            values[s[1:-1]] if s.startswith("{") else s for s in self.pattern.split("/")
        )

    def subscription(self, kind: str | None = None) -> str:
        """The MQTT filter that matches this layout (one kind, or every kind)."""
        return "/".join(
            (kind or "+") if s == "{kind}" else "+" if s.startswith("{") else s
            for s in self.pattern.split("/")
        )
