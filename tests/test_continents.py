"""The ISO 3166-1 alpha-2 -> continent table used by the geo transform."""

from __future__ import annotations

import re

import pytest

from gateway.transforms.continents import CONTINENT, CONTINENTS, continent_of


@pytest.mark.parametrize(
    ("cc", "continent"),
    [
        ("US", "NA"),
        ("DE", "EU"),
        ("CN", "AS"),
        ("BR", "SA"),
        ("AU", "OC"),
        ("ZA", "AF"),
        ("AQ", "AN"),
        ("FR", "EU"),
        ("SG", "AS"),
        ("IN", "AS"),
        ("RU", "EU"),
        ("MX", "NA"),
        ("NA", "AF"),
    ],
)
def test_known_codes(cc: str, continent: str) -> None:
    assert CONTINENT[cc] == continent
    assert continent_of(cc) == continent


def test_table_shape() -> None:
    assert len(CONTINENT) >= 245
    for cc, continent in CONTINENT.items():
        assert re.fullmatch(r"[A-Z]{2}", cc), cc
        assert continent in CONTINENTS, (cc, continent)
    assert set(CONTINENT.values()) == CONTINENTS


def test_lookup_is_case_insensitive_and_strict() -> None:
    assert continent_of("us") == "NA"
    assert continent_of("De") == "EU"
    for bad in ("", "U", "USA", "ZZ", "u\u017f", "\u00fc\u00df"):
        assert continent_of(bad) is None, bad
