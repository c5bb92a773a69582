"""Where personal identifiers are in a string: MAC-48 and EUI-64 addresses in every common
spelling (C byte lists too), host and vendor names that carry a MAC's tail, IPv4 and IPv6
addresses, IMEIs, e-mail addresses, long hex/base64 tokens and E.164 phone numbers.

Linear time whatever the input (payloads are at most 64 KiB), and fast on hostile input:

* the string is first mapped to character classes by `bytes.translate` (hex digit -> `h`;
  digit -> `d`, hex letter -> `x`, other letter -> `g`; separators kept), in C, and decoded
  back to `str` (whose `in` is many times faster than `bytes`' on short strings);
* most shapes are then searched on those class strings as literals (`hhhhhhhhhhhh`,
  `hh:hh:hh:hh:hh:hh`), which `re` finds with a fast prefix search instead of trying every
  position; a family whose literal is absent (`in`, also C) is not searched at all;
* the rest start with a single character class (so `re` skips other characters in C), and
  every unbounded repeat is possessive with nothing after it that can fail, or starts at a
  run's first character (look-behind), so no position is scanned twice;
* Python code runs per candidate, never per character.

`spans()` returns the identifiers' positions, each with its tag; `redact.py` replaces them.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re

from gateway.transforms import setup_codes as _setup

MAC = "<mac>"
EUI64 = "<eui64>"
HOSTMAC = "<hostmac>"
IP = "<ip>"
IMEI = "<imei>"
EMAIL = "<email>"
TOKEN = "<token>"  # noqa: S105 (a tag, not a secret)
PHONE = "<phone>"
TAGS = (MAC, EUI64, HOSTMAC, IP, IMEI, EMAIL, TOKEN, PHONE)

Span = tuple[int, int, str]  # start, end, tag


def _table(keep: str, classes: dict[str, str], other: str) -> bytes:
    t = bytearray(other.encode() * 256)
    for chars, cls in classes.items():
        for ch in chars:
            t[ord(ch)] = ord(cls)
    for ch in keep:
        t[ord(ch)] = ord(ch)
    return bytes(t)


_DIGITS = "0123456789"
_HEXL = "abcdefABCDEF"
_OTHERL = "ghijklmnopqrstuvwxyzGHIJKLMNOPQRSTUVWXYZ"
_SEPS = ":-._ %+@/"
_CLASSES = _table(_SEPS, {_DIGITS: "d", _HEXL: "x", _OTHERL: "g"}, "~")
_HEXES = _table(_SEPS, {_DIGITS + _HEXL: "h"}, "~")
_TOKENS = _table("", {_DIGITS + _HEXL + _OTHERL + "+/_-": "t"}, " ")


def _is_hex(c: str) -> bool:
    return c == "h"


# -- MAC-48, EUI-64, tokens as hex: searched on the hex-class string --------------------------

_RUN = re.compile(r"hhhhhhhhhhhhh*+")  # 12 or more hex digits in a row
_SEP = {
    sep: (
        "hh" + sep + "hh" + sep + "hh",
        re.compile(re.escape("hh" + (sep + "hh") * 5) + rf"(?:{re.escape(sep)}hh)*+"),
    )
    for sep in (":", "-", ".", " ", "_")
}
_PCT = re.compile(r"hh%hhhh%hhhh%hhhh%hhhh%hhhh(?:%hhhh)*+")  # 28%3A6C%3A07%3AA4%3A1B%3A9E
_PCT_SEP = re.compile(r"%(?:3[Aa]|2[DdEe]|20|5[Ff])")
_CISCO_DOT = re.compile(r"hhhh\.hhhh\.hhhh")  # 286c.07a4.1b9e
_CISCO_DASH = re.compile(r"hhhh-hhhh-hhhh")
_SIX = re.compile(r"hhhhhh-hhhhhh")  # 286c07-a41b9e
_UUID = re.compile(r"hhhhhhhh-hhhh-hhhh-hhhh-hhhhhhhhhhhh")
_FRACTION = re.compile(r"[0-9][.,]\Z")
_HEX_LETTER = re.compile(r"[a-fA-F]")


def _compact_time(d: str) -> bool:
    """yyyymmddhhmmss[fff]: a timestamp written without separators, not an IMEI."""
    y, mo, day = int(d[0:4]), int(d[4:6]), int(d[6:8])
    h, mi, s = int(d[8:10]), int(d[10:12]), int(d[12:14])
    return 1970 <= y <= 2099 and 1 <= mo <= 12 and 1 <= day <= 31 and h < 24 and mi < 60 and s < 60


def _run_tag(text: str, start: int, run: str) -> str | None:
    n = len(run)
    if run.isdigit():
        if n < 14 or _FRACTION.search(text, max(0, start - 2), start):
            return None
        if n <= 17 and _compact_time(run):
            return None
        return IMEI if n <= 20 else TOKEN
    if n == 12:
        return MAC
    return EUI64 if n <= 16 else TOKEN


# The Bluetooth SIG base UUID's constant tail ("0000ec88-0000-1000-8000-00805f9b34fb" is a
# 16-bit service id, the same on every device): neither a MAC nor a token.
_BT_BASE = "-0000-1000-8000-00805f9b34fb"


def _bt_base(text: str, end: int) -> bool:
    return text[max(0, end - len(_BT_BASE)) : end].lower() == _BT_BASE


def _isolated(hm: str, start: int, end: int) -> bool:
    return not (start and _is_hex(hm[start - 1])) and not (end < len(hm) and _is_hex(hm[end]))


def _hex(text: str, hm: str, out: list[Span]) -> None:
    if "hhhhhhhhhhhh" in hm:
        for m in _RUN.finditer(hm):
            tag = _run_tag(text, m.start(), text[m.start() : m.end()])
            if tag is not None and not (tag == MAC and _bt_base(text, m.end())):
                out.append((m.start(), m.end(), tag))
    for sep, (gate, rx) in _SEP.items():
        if sep in hm and gate in hm:
            width = 2 + len(sep)
            for m in rx.finditer(hm):
                # Pairs of decimal digits apart by spaces or dots are lists of numbers and
                # version strings far more often than MACs: those need a hex letter.
                if sep in " ." and _HEX_LETTER.search(text, m.start(), m.end()) is None:
                    continue
                groups = (m.end() - m.start() + len(sep)) // width
                out.append((m.start(), m.end(), EUI64 if groups == 8 else MAC))
    if "%" in hm and "hh%hhhh%" in hm:
        for m in _PCT.finditer(hm):
            s, e = m.span()
            seps = {text[i : i + 3].upper() for i in range(s + 2, e, 5)}
            if len(seps) == 1 and _PCT_SEP.fullmatch(seps.pop()):
                out.append((s, e, EUI64 if (e - s - 2) // 5 + 1 == 8 else MAC))
    dash = "-" in hm
    for gate, rx, tag in (
        ("hhhh.hhhh.", _CISCO_DOT, MAC),
        ("hhhh-hhhh-", _CISCO_DASH, MAC),
        ("hhhhhh-hhhhhh", _SIX, MAC),
        ("-hhhh-hhhh-hhhh-", _UUID, TOKEN),
    ):
        if (dash if gate[4:5] != "." else "." in hm) and gate in hm:
            for m in rx.finditer(hm):
                s, e = m.span()
                if not _isolated(hm, s, e):
                    continue
                if rx is _SIX and text[s:e].replace("-", "").isdigit():
                    continue  # "250508-110823": a build's date and time
                if rx is _UUID and _bt_base(text, e):
                    continue
                out.append((s, e, tag))


# -- host names that carry a MAC's tail, IMEIs with separators, phones: on the class string ---

# "ESP-A41B9E", "tasmota_A41B9E-2974", "shelly1-98cdac": six hex digits, letters and digits
# mixed, after "name-" or "name_".
_TAIL = re.compile(r"[-_](?<=[dxg][-_])(?=[dx]{0,5}x)(?=[dx]{0,5}d)[dx]{6}(?![dxg])(?:-dddd(?!d))?")
# Tails of one class only ('123456', 'ABCDEF') count after a firmware's own host name prefix
# (the ATC/pvvx thermometer firmware's BLE name "ATC_123456" too).
# WiZ's DHCP host name is "wiz_" + the MAC's last three bytes ("wiz_abcabc").
_PREFIXES = ("esp", "tasmota", "dves", "shelly", "wled", "sonoff", "openbk", "athom", "atc", "wiz")
_HOST_TAIL = re.compile(
    r"(?i)[adestwo](?<![0-9a-z][adestwo])"
    r"(?:(?<=e)sp(?:32(?:[a-z][0-9]{1,2})?|8266)?|(?<=t)asmota|(?<=d)ves|(?<=s)helly[0-9a-z]*+(?:-[a-z0-9]{1,2}(?=-))?"
    r"|(?<=e)sphome(?:-web)?|(?<=w)led|(?<=s)onoff|(?<=e)spurna|(?<=o)penbk[0-9a-z]*+"
    r"|(?<=a)thom[0-9a-z]*+|(?<=a)tc|(?<=w)iz)[-_]"
    r"(?P<t>[0-9a-f]{6})(?![0-9a-z])(?:-[0-9]{4}(?![0-9]))?"
)
# Vendor defaults of other shapes (sources: tests/data/README.md): OpenBeken's "obk8CA41B9E" and
# "OpenBK7231N_8CA41B9E" (the MAC's last four bytes), Hue's mDNS "Philips Hue - A41B9E",
# eWeLink's "eWeLink_1000e4c17c" (its device id), Govee's BLE "GVH5075_1B9E" (last two bytes).
# Each starts at a word's first letter and reads at most ~30 characters: linear.
_VENDOR = re.compile(
    r"(?i)[oheg](?<![0-9a-z][oheg])"
    r"(?:(?<=o)bk(?P<obk>[0-9a-f]{8})"
    r"|(?<=o)pen(?:b[kl]|xr|w|ln|esp|rtl|tr|ecr)[0-9a-z]{0,12}+_(?P<openbk>[0-9a-f]{8})"
    r"|(?<=h)ue - (?P<hue>[0-9a-f]{6})"
    r"|(?<=e)welink_(?P<ewelink>[0-9a-f]{10})"
    r"|(?<=g)(?:vh|ovee_h)[0-9]{4}[_ ](?P<govee>[0-9a-f]{4})"
    r")(?![0-9a-z])"
)
_GOVEE_GATE = re.compile(r"(?i)gvh|govee_h")
_VENDOR_GATES = ("obk", "open", "hue - ", "ewelink_", "gvh", "govee_h")
# Nanoleaf's mDNS instance and host names carry the MAC's last three bytes with their
# separators: "Nanoleaf Light Panels 53:3b:9b", "Nanoleaf-Light-Panels-53-3b-9b.local". Three
# bytes apart by ':' or '-' are times and dates elsewhere: only after "Nanoleaf" and up to three
# words of 3 to 16 letters (a byte is never one), so each start reads a bounded stretch.
_NANOLEAF = re.compile(
    r"(?i)n(?<![0-9a-z]n)anoleaf(?:[ -][a-z]{3,16}+){0,3}+[ -]"
    r"(?P<t>[0-9a-f]{2}([:-])[0-9a-f]{2}\2[0-9a-f]{2})(?![0-9a-z:-])"
)
# An EUI, MAC or key as a C byte list, as LMIC sketches hold a LoRaWAN DevEUI (least significant
# byte first) and AppKey: "0x7E, 0x1E, 0x06, 0xD0, 0x7E, 0xD5, 0xB3, 0x70". Six bytes or more;
# all-zero lists are placeholders. Possessive, so a run is read once.
_BYTES = re.compile(r"0(?<![0-9A-Za-z]0)[xX][0-9A-Fa-f]{2}(?:, ?0[xX][0-9A-Fa-f]{2}){5,}+")
_ZERO_BYTES = re.compile(r"0[xX]00(?:, ?0[xX]00)*")
# Xiaomi's own: "zhimi-airpurifier-ma2_miapA1B2" (AP name), "lumi-gateway-v3_miio12345678"
_MI = re.compile(r"_mi(?:(?:ap|bt)[0-9A-Fa-f]{4}(?![0-9A-Za-z])|io[0-9]{5,}+)")
# IMEI as AA-BBBBBB-CCCCCC-D[D] or AABBBBBB-CCCCCC-D[D] (any one of - . space /)
_IMEI_SEP = re.compile(r"([-. /])dddddd\1(?:dddddd\1)?dd?(?!d)")
_PHONE = re.compile(r"\+dddddddddd(?:d{0,5}+)(?!d)")  # E.164: +, 10 to 15 digits


def _named(text: str, cm: str, hm: str, out: list[Span]) -> None:
    dash, under = "-" in hm, "_" in hm
    low = ""
    if (dash and "-hhhhhh" in hm) or (under and "_hhhhhh" in hm):
        for m in _TAIL.finditer(cm):
            out.append((m.start() + 1, m.end(), HOSTMAC))
        low = text.lower()
        if any(p in low for p in _PREFIXES):
            for t in _HOST_TAIL.finditer(text):
                out.append((t.start("t"), t.end(), HOSTMAC))
    # every _VENDOR shape has 8 hex digits in a row, " - " and 6, or "_"/" " and 4
    if ("hhhhhhhh" in hm or "_hhhh" in hm or " hhhh" in hm) and any(
        p in (low or (low := text.lower())) for p in _VENDOR_GATES
    ):
        for t in _VENDOR.finditer(text):
            group = t.lastgroup or ""
            out.append((t.start(group), t.end(group), HOSTMAC))
    # separators first: "hh:hh:hh" in a long run of hex digits costs a step per character
    if ((":" in hm and "hh:hh:hh" in hm) or (dash and "hh-hh-hh" in hm)) and "nanoleaf" in (
        low or (low := text.lower())
    ):
        for t in _NANOLEAF.finditer(text):
            out.append((t.start("t"), t.end("t"), HOSTMAC))
    if ("x" in text or "X" in text) and "h~hh~" in hm:
        for m in _BYTES.finditer(text):
            s, e = m.span()
            if _ZERO_BYTES.fullmatch(text, s, e) is None:
                n = text.count("x", s, e) + text.count("X", s, e)
                out.append((s, e, MAC if n == 6 else EUI64 if n == 8 else TOKEN))
    if under and "_mi" in text:
        for t in _MI.finditer(text):
            out.append((t.start() + 5, t.end(), HOSTMAC))
    if any(f"{c}dddddd{c}" in cm for c in "-. /"):
        for m in _IMEI_SEP.finditer(cm):
            s, e = m.span()
            lead = 2 if e - s >= 16 else 8
            if cm[max(0, s - lead) : s] == "d" * lead and not (
                s > lead and cm[s - lead - 1] == "d"
            ):
                out.append((s - lead, e, IMEI))
    if "+" in cm and "+dddddddddd" in cm:
        for m in _PHONE.finditer(cm):
            if text[m.start() + 1] != "0":
                out.append((m.start(), m.end(), PHONE))
    # Matter and HomeKit setup codes (setup_codes.py gates each shape itself)
    out.extend((s, e, TOKEN) for s, e in _setup.setup_codes(text, cm))


# -- IPv4: octets, exclusions and boundaries checked inside the pattern -------------------------

_D = r"(?:\.|%2[Ee])"
_OCT = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|0[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(
    r"[0-9](?<![0-9][0-9])(?<![0-9]\.[0-9])(?<![0-9]%2[Ee][0-9])(?:(?P<ip>"
    rf"(?<=(?=[0-9]{{1,3}}{_D}[0-9]{{1,3}}{_D}[0-9]{{1,3}}{_D}[0-9])(?="
    # not loopback, unspecified, netmask/broadcast or multicast
    r"(?!0+\.|127\.|255\.|2(?:2[4-9]|3[0-9])\.)"
    # not a four-part firmware version ("8.4.0.2", "12.4.0.2"): first part <= 20 but not the
    # private 10/8 ("10.0.0.5" is a home LAN address), the others one digit
    r"(?!(?:[0-9]|1[1-9]|20)\.[0-9]\.[0-9]\.[0-9](?![0-9]))"
    rf"{_OCT}{_D}{_OCT}{_D}{_OCT}{_D}{_OCT}(?![0-9])(?!{_D}[0-9])"
    r")[0-9])"
    rf"[0-9]{{0,2}}(?:{_D}[0-9]{{1,3}}){{3}})"
    # a run of five or more dotted numbers is consumed whole: no digit in it is tried again
    r"|[0-9]*+(?:\.[0-9]++){4}[0-9.]*+)"
)


def _ipv4(text: str, out: list[Span]) -> None:
    for m in _IPV4.finditer(text):
        if m.lastgroup == "ip":
            out.append((m.start(), m.end(), IP))


# -- IPv6 -----------------------------------------------------------------------------------------

_V6_MAP = _table("", {_DIGITS + _HEXL + ":.": "v"}, " ")
# A '::' with a full four-digit group within the same run, after it (or, searched on the
# reversed string, before it): anchored on the literal, bounded, so found in C.
_V6_PLAUSIBLE = re.compile(r"::(?=(?:h{1,3}+:){0,6}+hhhh)")
_V6_FULL = re.compile(r"hh{0,3}+:(?:h{1,4}+:){6,}+h{0,4}+")  # eight groups or more, no '::'
_V6_EIGHT = re.compile(r"[0-9A-Fa-f][0-9A-Fa-f]{0,3}:(?:[0-9A-Fa-f]{1,4}:){6}[0-9A-Fa-f]")
_V6_BACK = 45  # longest address text


def _ipv6_ok(addr: str) -> bool:
    try:
        ip = ipaddress.IPv6Address(addr.split("%", 1)[0])
    except ValueError:
        return False
    if ip.is_loopback or ip.is_unspecified:
        return False
    groups = [g for g in addr.split("%", 1)[0].split(":") if g]
    # "d::bad" (std::bad_alloc) parses: a real address has a full 4-digit group or an IPv4 tail
    return len(groups) >= 2 and any(len(g) == 4 or "." in g for g in groups)


def _ipv6_candidate(text: str, start: int, end: int, out: list[Span]) -> None:
    cand = text[start:end]
    lead = len(cand) - len(cand.lstrip("."))
    if cand[lead:].startswith(":") and not cand[lead:].startswith("::"):
        lead += 1  # "ip:fe80::1" glued by one colon
    core = cand[lead:].rstrip(".")
    if core.endswith(":") and not core.endswith("::"):
        core = core[:-1]
    zone = re.match(
        r"%[0-9A-Za-z]{1,16}", text[start + lead + len(core) : start + lead + len(core) + 17]
    )
    if len(core) <= 64 and _ipv6_ok(core):
        end = start + lead + len(core) + (zone.end() if zone and core == cand[lead:] else 0)
        out.append((start + lead, end, IP))
    elif len(core) > 39 and _V6_EIGHT.search(core):
        out.append((start + lead, start + lead + len(core), IP))  # holds an address


def _ipv6(text: str, hm: str, raw: bytes, out: list[Span]) -> None:
    if "::" in hm and "hhhh" in hm:
        n = len(hm)
        found = [m.start() for m in _V6_PLAUSIBLE.finditer(hm)]
        found += [n - m.end() for m in _V6_PLAUSIBLE.finditer(hm[::-1])]
        if found:
            vm = raw.translate(_V6_MAP).decode()
            done = -1
            for pos in sorted(found):
                if pos < done:
                    continue  # same run as the last candidate
                start = vm.rfind(" ", max(0, pos - _V6_BACK), pos) + 1 or max(0, pos - _V6_BACK)
                end = vm.find(" ", pos)
                done = n if end < 0 else end
                _ipv6_candidate(text, start, done, out)
    if hm.count(":") >= 7:
        for m in _V6_FULL.finditer(hm):
            _ipv6_candidate(text, m.start(), m.end(), out)


# -- e-mail: found at its '@' (or %40), the local part read backwards from there ---------------

_EMAIL_AT = re.compile(
    r"[@%](?:(?<=@)|(?<=%)40)"
    r"(?:[A-Za-z0-9\-]++(?:\.|%2[Ee])(?=[A-Za-z0-9\-]))++[A-Za-z]{2,}+(?![A-Za-z0-9\-])"
)
_LOCAL_REV = re.compile(r"[A-Za-z0-9._+\-%]{0,64}+")  # the local part's characters, backwards


def _email(text: str, out: list[Span]) -> None:
    rev = text[::-1]
    size = len(text)
    for m in _EMAIL_AT.finditer(text):
        start = m.start()
        back = size - start
        n = _LOCAL_REV.match(rev, back).end() - back  # type: ignore[union-attr]
        first = start - n
        if n and ("%" in text[first:start] or text[first] == "."):
            local = text[first:start].rsplit("%40", 1)[-1].lstrip(".%")
            first, n = start - len(local), len(local)
        if n:
            out.append((first, m.end(), EMAIL))


# -- tokens: long base64/base64url runs that mix upper case, lower case and digits -------------

_TOKEN = re.compile(r"tttttttttttttttttttt*+")
_SEGMENT = re.compile(r"[A-Z]+|[a-z]+|[0-9]+")
_UPPER = re.compile(r"[A-Z]")
_LOWER = re.compile(r"[a-z]")
_DIGIT = re.compile(r"[0-9]")
_PIECES = re.compile(r"[+/_\-]+")
_WORDLIKE = re.compile(r"[A-Z0-9]+|[a-z0-9]+|[A-Z][a-z0-9]+")


def _is_token(run: str) -> bool:
    if not (_UPPER.search(run) and _LOWER.search(run) and _DIGIT.search(run)):
        return False
    if len(run) > 256:
        return True
    # Random base64 mixes cases evenly and switches class every other character; names
    # ("KEY_HOME/KEY_HOME/0x1f", "ChuangmiCameraIpc009") are mostly one case, in few runs.
    if all(_WORDLIKE.fullmatch(p) for p in _PIECES.split(run) if p):
        return False  # "KEY_HOME/auto/0x1f": every piece one case (or Capitalized)
    upper, lower = len(_UPPER.findall(run)), len(_LOWER.findall(run))
    if min(upper, lower) * 5 < upper + lower:
        return False
    return len(_SEGMENT.findall(run)) * 3 >= len(run)


def _token(text: str, tm: str, out: list[Span]) -> None:
    for m in _TOKEN.finditer(tm):
        s, e = m.span()
        if _is_token(text[s:e]):
            while e < len(text) and e - m.end() < 2 and text[e] == "=":
                e += 1
            out.append((s, e, TOKEN))


# -- all families --------------------------------------------------------------------------------

MIN_LEN = 6  # "a@b.cd", "-A41B9E": nothing shorter is an identifier


def _shaped(text: str, cm: str, hm: str) -> bool:
    """Whether any family's shape can occur at all: most kept values fail every test here."""
    return (
        "hhhhhh" in hm  # hex runs, host name tails, IMEI groups, UUIDs
        or "@" in cm
        or "%" in cm
        or ":" in cm
        or "+" in cm
        or cm.count(".") >= 3
        or "hh-hh-hh" in hm
        or "hh hh hh" in hm
        or "hh_hh_hh" in hm
        or "hhhh.hhhh." in hm
        or "hhhh-hhhh-" in hm
        or "_mi" in text
        or (("x" in text or "X" in text) and "h~hh~" in hm)  # C byte lists
        # Govee's "GVH5075_1B9E": a four-digit tail, only after its own prefix
        or (("_hhhh" in hm or " hhhh" in hm) and _GOVEE_GATE.search(text) is not None)
        or _setup.gated(text, cm)  # Matter and HomeKit setup codes
    )


class _Found(Exception):
    pass


class _FirstOnly(list[Span]):
    """A span list that stops the scan at its first span (`contains_identifier`)."""

    def append(self, span: Span) -> None:
        super().append(span)
        raise _Found


def spans(text: str, first: bool = False) -> list[Span]:
    """Identifier spans in `text` (unsorted, may overlap); with `first`, at most one."""
    out: list[Span] = _FirstOnly() if first else []
    with contextlib.suppress(_Found):
        _scan(text, out)
    return out


def _scan(text: str, out: list[Span]) -> None:
    n = len(text)
    if n < MIN_LEN or (n < 12 and text.isalnum() and (n != 11 or text[:3].lower() != "obk")):
        return  # too short, or too few for a hex run with no separator (but OpenBeken's obk+8)
    raw = text.encode("ascii", "replace")  # one byte per code point: positions line up
    # class strings as str: `in` on str is many times faster than on bytes
    cm = raw.translate(_CLASSES).decode()
    hm = raw.translate(_HEXES).decode()
    if _shaped(text, cm, hm):
        if ("@" in cm or "%40" in text) and ("." in cm or "%2" in text):
            _email(text, out)
        _hex(text, hm, out)
        _named(text, cm, hm, out)
        if ":" in hm:
            _ipv6(text, hm, raw, out)
        # every address flagged has a part of two digits or more ("1.2.3.4" reads as a version)
        if ("dd" in cm or "%" in cm) and (hm.count(".") >= 3 or "%2" in text):
            _ipv4(text, out)
    if len(text) >= 20:
        tm = raw.translate(_TOKENS).decode()
        if "t" * 20 in tm:
            _token(text, tm, out)
