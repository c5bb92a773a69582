"""The consent message and the per-device state it yields; shared by the store, the feed and
the engine (which only reads states).

Message: `{"withdrawn": false, "toggles": {"video_stream": true}}`. Toggles are opt-in: a
field that requires one leaves only while the device's latest consent message turns it on.
"""

from __future__ import annotations

import msgspec

# The data path refuses longer device ids (engine); the consent path and store do too.
MAX_DEVICE_ID = 128


class ConsentState(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    withdrawn: bool = False
    toggles: frozenset[str] = frozenset()


class ConsentMessage(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    withdrawn: bool = False
    toggles: dict[str, bool] = {}


class ConsentError(Exception):
    """Why a consent message was refused: a fixed reason, never message content."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_consent(payload: bytes, known_toggles: frozenset[str]) -> ConsentState:
    """Unknown toggles are refused (a typo must not silently grant nothing or everything).
    The error names a reason only: toggle names and decoder text come from the message."""
    try:
        msg = msgspec.json.decode(payload, type=ConsentMessage)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
        raise ConsentError("invalid_consent") from None
    if not known_toggles.issuperset(msg.toggles):
        raise ConsentError("undeclared_toggle")
    on = frozenset(name for name, v in msg.toggles.items() if v)
    return ConsentState(withdrawn=msg.withdrawn, toggles=on)
