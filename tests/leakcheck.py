"""Does an identifier leak from a blob (output bytes, /metrics text, log text) in any form?

`leaked_forms(identifiers, blob)` lists, for each identifier found, the form it was found in:

* ``exact``, ``case-folded``;
* ``separator-stripped``: `:`, `-`, `.`, `_`, space and `/` removed on both sides;
* ``hex-digits``: a MAC/EUI-64/token's hex digits, in the blob's hex digits (leading zeros of
  an EUI-64 dropped too: ``lumi.158d0001a2b3c4`` is ``0x00158d0001a2b3c4``);
* ``mac-tail``: the last three bytes (six hex digits) standing at a word edge (``ESP-A41B9E``);
* ``ipv4-dotted`` (any zero padding: ``192.168.031.047``), ``ipv4-integer`` (``3232243503``);
* ``ipv6``: compressed or exploded, or the 32 hex digits;
* ``decimal``: an integer identifier's digits standing alone.

The blob is searched as given, with JSON ``\\uXXXX`` escapes decoded, and percent-decoded (twice),
so ``28%3A6C%3A07...`` and ``jane%40example.com`` count. Short forms (under 6 characters after
stripping) are not searched as substrings: they match too much by chance.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from urllib.parse import unquote

_SEPS = re.compile(r"[:\-._ /]")
_NOT_HEX = re.compile(r"[^0-9a-f]")
_JSON_U = re.compile(r"\\u([0-9a-fA-F]{4})")
_HEXISH = re.compile(r"(?:0x|lumi\.)?[0-9a-f]{2}(?:[:\-. ]?[0-9a-f]{2}){5,7}")
_CISCO = re.compile(r"[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4}")
MIN_FORM = 6


def _variants(blob: bytes | str) -> list[str]:
    text = blob.decode("utf-8", "replace") if isinstance(blob, bytes) else blob
    out = [text]
    unescaped = _JSON_U.sub(lambda m: chr(int(m.group(1), 16)), text)
    if unescaped != text:
        out.append(unescaped)
    for v in list(out):
        once = unquote(v)
        if once != v:
            out.append(once)
            twice = unquote(once)
            if twice != once:
                out.append(twice)
    return out


class _Views:
    def __init__(self, text: str) -> None:
        self.text = text
        self.folded = text.casefold()
        self.stripped = _SEPS.sub("", self.folded)
        self.hex = _NOT_HEX.sub("", self.folded)


def _ipv4(ident: str) -> ipaddress.IPv4Address | None:
    parts = ident.split(".")
    if len(parts) != 4 or not all(p.isdigit() and len(p) <= 3 for p in parts):
        return None
    try:
        return ipaddress.IPv4Address(".".join(str(int(p)) for p in parts))
    except ValueError:
        return None


def _ipv6(ident: str) -> ipaddress.IPv6Address | None:
    if ident.count(":") < 2:
        return None
    try:
        return ipaddress.IPv6Address(ident.split("%", 1)[0])
    except ValueError:
        return None


def _mac_hex(folded: str) -> str | None:
    """The hex digits of a MAC-48 / EUI-64 in any spelling, else None."""
    if _HEXISH.fullmatch(folded) or _CISCO.fullmatch(folded):
        digits = _NOT_HEX.sub("", folded.removeprefix("0x").removeprefix("lumi."))
        if len(digits) in (12, 14, 16):
            return digits
    return None


def _forms_str(ident: str, views: _Views) -> list[str]:
    found: list[str] = []
    folded = ident.casefold()
    if ident in views.text:
        found.append("exact")
    elif folded in views.folded:
        found.append("case-folded")
    stripped = _SEPS.sub("", folded)
    if len(stripped) >= MIN_FORM and stripped in views.stripped and not found:
        found.append("separator-stripped")
    v4 = _ipv4(ident)
    if v4 is not None:
        a, b, c, d = (str(int(p)) for p in str(v4).split("."))
        sep = r"(?:\.|%2e)"
        dotted = rf"(?<!\d)0{{0,2}}{a}{sep}0{{0,2}}{b}{sep}0{{0,2}}{c}{sep}0{{0,2}}{d}(?!\d)"
        if re.search(dotted, views.folded) and not found:
            found.append("ipv4-dotted")
        if re.search(rf"(?<!\d){int(v4)}(?!\d)", views.text):
            found.append("ipv4-integer")
        return found
    v6 = _ipv6(ident)
    if v6 is not None:
        if (
            v6.compressed in views.folded
            or v6.exploded in views.folded
            or v6.exploded.replace(":", "") in views.hex
        ) and not found:
            found.append("ipv6")
        return found
    mac = _mac_hex(folded)
    if mac is None and len(stripped) >= 12 and not _NOT_HEX.search(stripped):
        mac = stripped  # a bare hex token
    if mac is not None:
        if (mac in views.hex or (len(mac.lstrip("0")) >= 12 and mac.lstrip("0") in views.hex)) and (
            not found
        ):
            found.append("hex-digits")
        tail = mac[-6:]
        if len(mac) <= 16 and re.search(rf"(?<![0-9a-f]){tail}|{tail}(?![0-9a-f])", views.folded):
            found.append("mac-tail")
    return found


def _forms_int(ident: int, views: _Views) -> list[str]:
    found = []
    digits = str(abs(ident))
    if len(digits) >= MIN_FORM and re.search(rf"(?<!\d){digits}(?!\d)", views.text):
        found.append("decimal")
    bounded = rf"(?<!\d){digits}(?!\d)"
    if len(digits) >= MIN_FORM and not found and re.search(bounded, views.stripped):
        found.append("separator-stripped")
    return found


def leaked_forms(identifiers: Iterable[str | int], blob: bytes | str) -> list[str]:
    """`"<identifier> as <form>"` for each identifier found in `blob`, in each form found."""
    views = [_Views(v) for v in _variants(blob)]
    report: list[str] = []
    for ident in identifiers:
        forms: list[str] = []
        for view in views:
            got = _forms_int(ident, view) if isinstance(ident, int) else _forms_str(ident, view)
            forms.extend(f for f in got if f not in forms)
        report.extend(f"{ident!r} as {f}" for f in forms)
    return report
