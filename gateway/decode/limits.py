"""Bytes -> a JSON object, or the bounded reason it cannot be one.

Fail closed: anything a second parser could read differently (duplicate keys, invalid UTF-8)
or that costs unbounded work (size, depth) is rejected before the policy sees it.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


class Limits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    max_bytes: int = 65536
    max_depth: int = 16


class Bad(Exception):
    """A payload the gateway will not decode; `reason` is a bounded label."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _depth(obj: object, limit: int) -> bool:
    stack: list[tuple[object, int]] = [(obj, 1)]
    while stack:
        node, d = stack.pop()
        if d > limit:
            return False
        if type(node) is dict:
            stack.extend((v, d + 1) for v in node.values() if type(v) in (dict, list))
        elif type(node) is list:
            stack.extend((v, d + 1) for v in node if type(v) in (dict, list))
    return True


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise Bad("duplicate_key")
    return out


def _has_duplicates(payload: bytes, obj: dict[str, Any]) -> bool:
    # Fast path: re-encoding the decoded object gives back the payload minus whitespace
    # unless a key was collapsed (or escapes/number spellings differ); only then pay for the
    # exact pairwise check with the standard library.
    again = _encoder.encode(obj)
    if again == payload or again == msgspec.json.format(payload, indent=-1):
        return False
    try:
        json.loads(payload, object_pairs_hook=_reject_duplicates)
    except Bad:
        return True
    return False


def _is_utf8(payload: bytes) -> bool:
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def decode_object(payload: bytes, limits: Limits) -> dict[str, Any]:
    if len(payload) > limits.max_bytes:
        raise Bad("too_large")
    try:
        obj = _decoder.decode(payload)
    except (msgspec.DecodeError, UnicodeDecodeError):
        # msgspec < 0.23 raised UnicodeDecodeError, 0.23 a DecodeError: classify by the
        # bytes themselves, never by a library's exception type or wording.
        raise Bad("invalid_json" if _is_utf8(payload) else "invalid_utf8") from None
    except RecursionError:
        raise Bad("too_deep") from None
    if type(obj) is not dict:
        raise Bad("not_object")
    # Fewer brackets than the limit cannot nest deeper than it: skip the walk.
    if payload.count(b"{") + payload.count(b"[") > limits.max_depth and not _depth(
        obj, limits.max_depth
    ):
        raise Bad("too_deep")
    if _has_duplicates(payload, obj):
        raise Bad("duplicate_key")
    return obj
