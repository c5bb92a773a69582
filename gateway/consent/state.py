"""Consent per device: retained messages on `<prefix>/<product>/<device>/consent`, kept in a
durable store so a restart never forgets a withdrawal.

Message: `{"withdrawn": false, "toggles": {"video_stream": true}}`. Toggles are opt-in: a
field that requires one leaves only while the device's latest consent message turns it on.
"""

from __future__ import annotations

import threading
from pathlib import Path

import msgspec

from gateway.durable import replace_file


class ConsentState(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    withdrawn: bool = False
    toggles: frozenset[str] = frozenset()


class ConsentMessage(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    withdrawn: bool = False
    toggles: dict[str, bool] = {}


class ConsentError(Exception):
    pass


def parse_consent(payload: bytes, known_toggles: frozenset[str]) -> ConsentState:
    """Unknown toggles are refused (a typo must not silently grant nothing or everything)."""
    try:
        msg = msgspec.json.decode(payload, type=ConsentMessage)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
        raise ConsentError(f"invalid consent message: {exc}") from None
    unknown = sorted(set(msg.toggles) - known_toggles)
    if unknown:
        raise ConsentError(f"consent message names undeclared toggles {unknown}")
    on = frozenset(name for name, v in msg.toggles.items() if v)
    return ConsentState(withdrawn=msg.withdrawn, toggles=on)


class ConsentStore:
    """In memory for the hot path, written through to a file (tmp + fsync + rename) on every
    change, which is rare next to telemetry. Keys are `product/device` as on the wire: the file
    is the gateway's own local state, like the broker's retained store."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._states: dict[tuple[str, str], ConsentState] = {}
        if path is not None and path.exists():
            raw = msgspec.json.decode(path.read_bytes(), type=dict[str, ConsentState])
            for key, state in raw.items():
                product, _, device = key.partition("/")
                self._states[product, device] = state

    def get(self, product: str, device: str) -> ConsentState | None:
        return self._states.get((product, device))

    def set(self, product: str, device: str, state: ConsentState) -> ConsentState | None:
        """Store the state; returns the previous one."""
        with self._lock:
            prev = self._states.get((product, device))
            if prev == state:
                return prev
            self._states[product, device] = state
            self._persist()
            return prev

    def _persist(self) -> None:
        if self.path is None:
            return
        doc = {f"{p}/{d}": s for (p, d), s in self._states.items()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        replace_file(self.path, msgspec.json.encode(doc))
