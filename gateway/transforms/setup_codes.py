"""Device setup codes that grant control of a device (a kept firmware string can carry one):
Matter manual pairing codes (11 digits shown 4-3-4, or 21 shown 4-3-4-5-5, the last digit a
Verhoeff check digit: "3497-011-2332"), Matter QR payloads ("MT:" + base-38, 19+ characters:
"MT:Y.K9042C00KA0648G00") and HomeKit setup codes ("XXX-XX-XXX": "031-45-154").

Searched on the class string (digit -> `d`, letter -> `x`/`g`) from a literal `d`, each
candidate bounded (at most 25 characters): linear. A bare 11-digit code (no separators) is not
told from a number and is not searched.
"""

from __future__ import annotations

import re

# 4-3-4(-5-5) apart by one '-' or ' ', or 3-2-3 apart by '-'; not inside a longer run of
# digits, letters, dots or dashes (versions, dates, part numbers).
_CODE = re.compile(
    r"d(?<![dxg.-]d)(?:ddd(?P<sep>[- ])ddd(?P=sep)dddd(?:(?P=sep)ddddd(?P=sep)ddddd)?"
    r"|dd-dd-ddd)(?![dxg.-])"
)
_QR = re.compile(r"M(?<![0-9A-Za-z]M)T:[0-9A-Z.\-]{19,}+")

# Verhoeff's dihedral-group tables
_D = (
    "0123456789",
    "1234067895",
    "2340178956",
    "3401289567",
    "4012395678",
    "5987604321",
    "6598710432",
    "7659821043",
    "8765932104",
    "9876543210",
)
_P = (
    "0123456789",
    "1576283094",
    "5803796142",
    "8916043527",
    "9453126870",
    "4286573901",
    "2793806415",
    "7046913258",
)


# _STEP[i % 8][c][digit]: the check state after a digit at position i (from the right)
_STEP = tuple(
    tuple(tuple(int(_D[c][int(_P[i][d])]) for d in range(10)) for c in range(10)) for i in range(8)
)


def _verhoeff_ok(digits: str) -> bool:
    c = 0
    for i, ch in enumerate(reversed(digits.encode())):
        c = _STEP[i & 7][c][ch - 48]
    return c == 0


def gated(text: str, cm: str) -> bool:
    """Whether a setup code's shape can occur (cheap `in` tests)."""
    return "ddd-dd" in cm or "ddd dd" in cm or "MT:" in text


def setup_codes(text: str, cm: str) -> list[tuple[int, int]]:
    """Spans of setup codes in `text` (`cm` its class string)."""
    found: list[tuple[int, int]] = []
    if "ddd-dd" in cm or "ddd dd" in cm:
        for m in _CODE.finditer(cm):
            s, e = m.span()
            if m.group("sep") is None or _verhoeff_ok(text[s:e].replace(m.group("sep"), "")):
                found.append((s, e))
    if "MT:" in text:
        for m in _QR.finditer(text):
            found.append(m.span())
    return found
