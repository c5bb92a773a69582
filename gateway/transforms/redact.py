"""Free text is scanned for identifiers smuggled into it, which are replaced by a tag.

Catches e-mail addresses, MAC addresses, IPv6 (including EUI-64 link-local, which embeds a
MAC) and IPv4 addresses, and IMEIs (15 digits with a valid Luhn check). Where a match is
ambiguous, it errs towards redacting a little more (`mac:a4:..` loses its `ac:` too);
candidate addresses must stand alone as words and parse, so `std::bad_alloc` stays text.
"""

from __future__ import annotations

import ipaddress
import re

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
# Runs of six or more hex pairs joined by ':' or '-': the whole run goes.
_MAC = re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){5,}(?![0-9A-Fa-f])")
_IPV6 = re.compile(r"(?<!\w)[0-9A-Fa-f:.]{2,}(?:%[\w.]+)?(?!\w)")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)")
_IMEI = re.compile(r"(?<!\d)\d{15}(?!\d)")
# Anything that can hold an identifier has a digit, ':', '-' or '@'; much text has none.
_HINT = re.compile(r"[0-9@:-]")


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _ipv6(m: re.Match[str]) -> str:
    text = m.group()
    core = text.rstrip(".")  # a sentence may end right after the address
    if core.count(":") < 2:
        return text
    try:
        ipaddress.IPv6Address(core.split("%", 1)[0])
    except ValueError:
        return text
    return "[ip]" + text[len(core) :]


def _ipv4(m: re.Match[str]) -> str:
    try:
        ipaddress.IPv4Address(m.group())
    except ValueError:
        return m.group()
    return "[ip]"


def _imei(m: re.Match[str]) -> str:
    return "[imei]" if _luhn(m.group()) else m.group()


def redact(text: str) -> tuple[str, bool]:
    """The text with identifiers replaced, and whether anything was replaced."""
    if _HINT.search(text) is None:
        return text, False
    out = _EMAIL.sub("[email]", text)
    out = _MAC.sub("[mac]", out)
    out = _IPV6.sub(_ipv6, out)
    out = _IPV4.sub(_ipv4, out)
    out = _IMEI.sub(_imei, out)
    return out, out != text


_BARE_MAC = re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{12}(?![0-9A-Fa-f])")


def contains_identifier(text: str) -> bool:
    return redact(text)[1] or _BARE_MAC.search(text) is not None


def identifier_int(n: int) -> bool:
    """A JSON integer that could be an identifier: IMEI-length, a MAC or an EUI-64 as a number."""
    return abs(n) >= 10**10
