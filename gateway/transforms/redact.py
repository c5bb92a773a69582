"""Free text is scanned for identifiers smuggled into it, which are replaced by a tag.

Catches MAC addresses, IPv4 and IPv6 (including EUI-64 link-local, which embeds a MAC),
IMEIs (15 digits with a valid Luhn check) and e-mail addresses.
"""

from __future__ import annotations

import ipaddress
import re

_SCAN = re.compile(
    r"(?P<email>[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,})"
    r"|(?P<mac>(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}(?![0-9A-Fa-f:]))"
    r"|(?P<ipv6>(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f.]{0,15}(?:%[\w.]+)?)"
    r"|(?P<ipv4>(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.]))"
    r"|(?P<imei>(?<!\d)\d{15}(?!\d))"
)
# Anything that can hold an identifier has a digit, ':' or '@'; most text has none of those.
_HINT = re.compile(r"[0-9@:]")


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _replace(m: re.Match[str]) -> str:
    kind = m.lastgroup or ""
    text = m.group()
    if kind == "ipv6":
        try:
            ipaddress.IPv6Address(text.split("%", 1)[0])
        except ValueError:
            return text
        return "[ip]"
    if kind == "ipv4":
        try:
            ipaddress.IPv4Address(text)
        except ValueError:
            return text
        return "[ip]"
    if kind == "imei" and not _luhn(text):
        return text
    return f"[{kind}]"


def redact(text: str) -> tuple[str, bool]:
    """The text with identifiers replaced, and whether anything was replaced."""
    if _HINT.search(text) is None:
        return text, False
    out = _SCAN.sub(_replace, text)
    return out, out != text
