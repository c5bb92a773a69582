"""gateway.toml: the example file documents the defaults, and bad settings fail clearly."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from gateway.config import ConfigError, GatewayConfig, load_config

ROOT = Path(__file__).resolve().parent.parent


def test_example_config_lists_exactly_the_defaults() -> None:
    example = load_config(ROOT / "gateway.example.toml")
    # `policies` is the one setting the file marks as an example.
    assert msgspec.structs.replace(example, policies=None) == GatewayConfig()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[source]\nport = 0\n", "source.port out of range"),
        ('[routing]\ndefault_region = "mars"\n', "routing.default_region must be one of"),
        ('[[sinks]]\ntype = "file"\n', "a file sink needs a [sinks.file] table"),
        ('[[sinks]]\ntype = "file"\nregions = ["xx"]\nfile = { dir = "d" }\n', "['xx']"),
        ("unknown_setting = 1\n", "unknown field `unknown_setting`"),
        ("workers = 0\n", "workers must be >= 1"),
    ],
)
def test_bad_settings_name_what_is_wrong(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value)
    assert says in str(err.value)
