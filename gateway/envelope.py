"""What leaves the gateway: one Record per accepted message, and what does not: a Rejection."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec


class PolicyRef(msgspec.Struct, frozen=True):
    id: str
    hash: str


class Record(msgspec.Struct, frozen=True):
    id: str  # keyed digest of the accepted message: the sinks' dedupe key
    product: str
    kind: str
    device: str  # pseudonym
    region: str
    received: datetime
    policy: PolicyRef
    key: str  # pseudonym key id (product/epoch), for rotation
    data: dict[str, Any]


class Rejection(msgspec.Struct, frozen=True):
    """Nothing of the message is forwarded. `field` names a declared path, never a value."""

    product: str
    kind: str
    reason: str
    field: str | None = None


class Held(msgspec.Struct, frozen=True):
    """Enforced, but the device's region is not one the policy names: kept local, never sent."""

    record: Record


Outcome = Record | Rejection | Held

_encoder = msgspec.json.Encoder()


def encode(item: Record | Rejection | Held) -> bytes:
    return _encoder.encode(item)
