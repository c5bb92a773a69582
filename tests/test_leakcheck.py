"""tests/leakcheck.py finds an identifier in every form it can leak in, and nothing else."""

from __future__ import annotations

import pytest

from tests.leakcheck import leaked_forms

MAC = "28:6C:07:A4:1B:9E"
EUI = "0x00158d0001a2b3c4"
IP = "192.168.31.47"
IMEI = "352099001761481"


@pytest.mark.parametrize(
    ("ident", "blob", "form"),
    [
        (MAC, '{"mac":"28:6C:07:A4:1B:9E"}', "exact"),
        (MAC, '{"mac":"28:6c:07:a4:1b:9e"}', "case-folded"),
        (MAC, '{"mac":"28-6c-07-a4-1b-9e"}', "separator-stripped"),
        (MAC, '{"mac":"286c.07a4.1b9e"}', "separator-stripped"),
        (MAC, '{"x":"MAC286C07A41B9E!"}', "separator-stripped"),
        (MAC, '{"x":"28 6C 07 A4 1B 9E"}', "separator-stripped"),
        (MAC, '{"x":"mac=28%3A6C%3A07%3AA4%3A1B%3A9E"}', "exact"),
        (MAC, '{"x":"286c07\\u0061\\u0034\\u0031\\u0062\\u0039\\u0065"}', "separator-stripped"),
        (MAC, '{"host":"ESP-A41B9E"}', "mac-tail"),
        (MAC, "tasmota_A41B9E-2974 up", "mac-tail"),
        (MAC, 'gateway_undeclared_fields_total{field="dves_a41b9e"} 1', "mac-tail"),
        (EUI, '{"did":"lumi.158d0001a2b3c4"}', "hex-digits"),
        (EUI, '{"ieee":"00:15:8d:00:01:a2:b3:c4"}', "hex-digits"),
        (EUI, '{"friendly_name":"0X00158D0001A2B3C4"}', "case-folded"),
        (IP, '{"ip":"192.168.031.047"}', "ipv4-dotted"),
        (IP, '{"ip":3232243503}', "ipv4-integer"),
        (IP, '{"ip":"host192.168.31.47"}', "exact"),
        (IP, "192%2E168%2E31%2E47", "exact"),
        ("fe80::1a2b:3cff:fe4d:5e6f", "fe80:0000:0000:0000:1a2b:3cff:fe4d:5e6f", "ipv6"),
        (IMEI, '{"imei":"35-209900-176148-1"}', "separator-stripped"),
        (int(IMEI), '{"life":352099001761481}', "decimal"),
        ("jane.doe@example.com", "mail=jane.doe%40example.com", "exact"),
        ("jane.doe@example.com", "JANE.DOE@EXAMPLE.COM", "case-folded"),
    ],
)
def test_leak_found(ident: str | int, blob: str, form: str) -> None:
    assert f"{ident!r} as {form}" in leaked_forms([ident], blob)
    assert leaked_forms([ident], blob.encode()) == leaked_forms([ident], blob)


@pytest.mark.parametrize(
    ("ident", "blob"),
    [
        (MAC, '{"mac":"<mac>","host":"ESP-<hostmac>"}'),
        (MAC, '{"mac":"mac:3f9a0c1d2e4b5a6978c0ffee11223344"}'),  # a pseudonym: no tail at an edge
        (MAC, '{"oui":"28:6C:07"}'),  # the vendor part alone is not this device
        (EUI, '{"did":"lumi.<eui64>"}'),
        (IP, '{"country":"US","ip":"<ip>","rssi":-47,"ts":1700000000}'),
        (IMEI, '{"imei":"<imei>"}'),
        (int(IMEI), '{"life":3520990017614810}'),
        ("jane.doe@example.com", '{"note":"mail <email>"}'),
    ],
)
def test_no_leak(ident: str | int, blob: str) -> None:
    assert leaked_forms([ident], blob) == []


def test_reports_each_identifier() -> None:
    got = leaked_forms([MAC, IP, "nobody@example.org"], f"{MAC} and {IP}")
    assert got == [f"{MAC!r} as exact", f"{IP!r} as exact"]
