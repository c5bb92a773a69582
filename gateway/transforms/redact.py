"""The identifier floor: every forwarded string and integer is checked for personal identifiers.

* `contains_identifier(text)`: whether the text holds an identifier in any spelling.
* `redact(text) -> (text, hit)`: each identifier replaced by a fixed tag, and whether any was.
  The tags (`TAGS`: <mac> <eui64> <hostmac> <ip> <imei> <email> <token> <phone>) are never
  detected themselves, so `redact` is idempotent.
* `identifier_int(n)`: whether a JSON integer could be an identifier.

Spellings, families and their limits are in `identifiers.py`; every family is linear in the
length of the text (a hostile 64 KiB string is scanned in milliseconds: bench/inproc.py).
"""

from __future__ import annotations

from gateway.transforms.identifiers import TAGS, Span, spans

__all__ = ["TAGS", "contains_identifier", "identifier_int", "redact"]

_MAX_ROUNDS = 4


def contains_identifier(text: str) -> bool:
    """True if `text` contains a personal identifier in any spelling this module knows."""
    return bool(spans(text, first=True))


def _merge(found: list[Span]) -> list[Span]:
    """Overlapping spans become one, tagged by the earliest (then longest) of them."""
    found.sort(key=lambda s: (s[0], -s[1]))
    merged: list[Span] = []
    for start, end, tag in found:
        if merged and start < merged[-1][1]:
            last = merged[-1]
            if end > last[1]:
                merged[-1] = (last[0], end, last[2])
        else:
            merged.append((start, end, tag))
    return merged


# Characters no detector reads as part of, or as context of, an identifier (identifiers.py): a
# tag between two of these cannot make a new identifier with what is around it.
_INERT = frozenset(" \t\r\n\"',;()[]{}<>=!?|&#*~^$")


def _once(text: str) -> tuple[str, bool]:
    """One pass: the text with identifiers replaced, and whether a second pass could find more
    (a tag that now touches letters, digits or separators changes their context)."""
    found = spans(text)
    if not found:
        return text, False
    parts: list[str] = []
    pos = 0
    size = len(text)
    settled = True
    for start, end, tag in _merge(found):
        parts.append(text[pos:start])
        parts.append(tag)
        pos = end
        if (start and text[start - 1] not in _INERT) or (end < size and text[end] not in _INERT):
            settled = False
    parts.append(text[pos:])
    return "".join(parts), not settled


def redact(text: str) -> tuple[str, bool]:
    """The text with each identifier replaced by its tag, and whether anything was replaced."""
    out, again = _once(text)
    if out == text:
        return text, False
    # A replacement can change what is around it ("a-A41B9E" + tag): scan until stable.
    for _ in range(_MAX_ROUNDS):
        if not again:
            break
        nxt, again = _once(out)
        if nxt == out:
            break
        out = nxt
    return out, True


# -- integers ------------------------------------------------------------------------------------

_INT32 = 1 << 32
# Milliseconds since the epoch, 2000-01-01 .. 2100-01-01 (zigbee2mqtt `last_seen`, Shelly
# `ts`): a 48-bit MAC in this window would start with 00:DC..03:BB.
_EPOCH_MS = (946_684_800_000, 4_102_444_800_000)
# Private IPv4 ranges as integers, above 2**31: no counter, uptime or Unix time reaches them.
_PRIVATE_V4 = ((0xAC100000, 0xAC1FFFFF), (0xC0A80000, 0xC0A8FFFF))  # 172.16/12, 192.168/16


def identifier_int(n: int) -> bool:
    """True if a JSON integer could be an identifier: a MAC-48 or EUI-64 as a number, an IMEI
    (15-17 digits), or a private IPv4 address as a number. Counters, uptimes, RSSI, Unix times
    in seconds and epoch milliseconds are not."""
    if isinstance(n, bool):
        return False
    m = abs(n)
    if m >= _INT32:
        return not (_EPOCH_MS[0] <= m < _EPOCH_MS[1])
    return any(lo <= m <= hi for lo, hi in _PRIVATE_V4)
